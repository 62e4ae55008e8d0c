"""The README's notebook line, executed in a fresh kernel with nbclient: the dashboard
must come out as a renderable Panel output (not a text repr and a warning to call
``pn.extension()`` first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]


def _readme_notebook_code() -> str:
    """The code the README gives for a notebook (its "Notebook:" bullet)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"\* Notebook: `([^`]+)`", readme)
    assert m, "the README names a notebook line"
    return "\n".join(part.strip() for part in m.group(1).split(";"))


def test_readme_notebook_line_renders_a_panel_output(tmp_path, monkeypatch):
    monkeypatch.setenv("AMQADF_DATA_DIR", str(tmp_path))  # the kernel inherits it
    monkeypatch.setenv("AMQADF_RATE", "500")
    code = _readme_notebook_code()
    assert "Dashboard.embedded()" in code
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = nb.cells[0].outputs
    mimetypes = {k for out in outputs for k in out.get("data", {})}
    text = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    assert "requires the panel extension" not in text, text
    assert "application/vnd.holoviews_load.v0+json" in mimetypes, mimetypes
    result = [out for out in outputs if out.get("output_type") == "execute_result"]
    assert result, "the cell's value is displayed"
    assert "application/vnd.holoviews_exec.v0+json" in result[0]["data"], result[0]["data"].keys()
    assert "text/html" in result[0]["data"]
