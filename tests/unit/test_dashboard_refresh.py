"""What a machine page's view refresh costs the server beyond the views' own work."""

from __future__ import annotations

from typing import Any

from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div

from dashboard.machine_dashboard import _models_frozen


def test_a_refresh_walks_the_model_graph_only_when_it_changed(monkeypatch: Any) -> None:
    """Bokeh's freeze walks every model of the document when it ends; a refresh that
    only sends new data must not (it did once per refresh of every session)."""
    doc = Document()
    div = Div(text="a")
    doc.add_root(div)
    walks: list[int] = []
    real = doc.models.recompute
    monkeypatch.setattr(doc.models, "recompute", lambda: walks.append(1) or real())
    with _models_frozen(doc):
        div.text = "b"
        with doc.models.freeze():  # as HoloViews and Panel freeze inside a refresh
            div.styles = {"color": "red"}
    assert walks == []
    src = ColumnDataSource()
    with _models_frozen(doc):
        div.tags = [src]  # a model added
        assert doc.get_model_by_id(src.id) is None  # held until the refresh ends
    assert walks == [1] and doc.get_model_by_id(src.id) is src
    with doc.models.freeze(), _models_frozen(doc):  # inside someone else's freeze
        div.tags = []
    assert len(walks) == 2 and doc.get_model_by_id(src.id) is None  # walked once, by it
    div.text = "c"  # outside: Bokeh's own behaviour is back
    assert "invalidate" not in vars(doc.models)
