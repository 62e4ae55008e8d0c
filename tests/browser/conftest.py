"""Browser tests: one ``panel serve dashboard/app.py`` per test session on a free
loopback port, driven by headless Debian Chromium through Playwright (sync API).

Chromium is the system one (``/usr/bin/chromium``, installed by ``.ci/run``); no
browser is downloaded. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Screenshots go to a scratch folder, so a test run never modifies tracked files;
# AMQADF_SCREENSHOTS=docs/screenshots refreshes the README's pictures.
SCREENSHOTS = Path(
    os.environ.get("AMQADF_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / f"amqadf-screenshots-{os.getuid()}"
)
if not SCREENSHOTS.is_absolute():
    SCREENSHOTS = ROOT / SCREENSHOTS
CHROMIUM = os.environ.get("AMQADF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 1000}

pytestmark = pytest.mark.browser

# Panel app scripts, not test modules: importing one would start its pipeline or scene
collect_ignore = ["hostile_app.py", "voxel_colour_app.py"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"panel serve exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last error: {last})")


def start_dashboard(
    port: int,
    data_dir: str,
    log_path: Path,
    extra_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
    app: str | Sequence[str] = "dashboard/app.py",
) -> subprocess.Popen:
    """``panel serve dashboard/app.py`` (or another ``app`` script, or several) on the
    embedded default at 127.0.0.1:``port`` (plus ``extra_args``, e.g. a log-in),
    returned once it answers (its output goes to ``log_path``)."""
    apps = [app] if isinstance(app, str) else list(app)
    env = {
        **os.environ,
        "AMQADF_DATA_DIR": data_dir,
        "AMQADF_RATE": os.environ.get("AMQADF_TEST_RATE", "2500"),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    for var in ("AMQADF_KAFKA", "AMQADF_REDIS_URL", "AMQADF_MONGO_URI", "AMQADF_TOPIC",
                "AMQADF_STATE", "AMQADF_STATE_PREFIX"):  # fmt: skip
        if var not in (extra_env or {}):  # the embedded default, unless a test says so
            env.pop(var, None)
    cmd = [
        sys.executable, "-m", "panel", "serve", *apps,
        "--port", str(port), "--address", "127.0.0.1",
        "--allow-websocket-origin", f"127.0.0.1:{port}",
        "--num-procs", "1", "--liveness",
        # sessions of closed pages stop their refresh quickly instead of after 15 s
        "--unused-session-lifetime", "3000", "--check-unused-sessions", "1000",
        *extra_args,
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # /liveness answers without creating a session (a GET of /app would make one)
        _wait_http(f"http://127.0.0.1:{port}/liveness", proc, timeout=60)
    except Exception:
        stop_dashboard(proc)
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    return proc


def stop_dashboard(proc: subprocess.Popen) -> None:
    """Stop a server from :func:`start_dashboard` (SIGTERM, then SIGKILL)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """Base URL of a dashboard server on the embedded default (simulated build)."""
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-browser-")
    log_path = Path(data_dir) / "panel-serve.log"
    proc = start_dashboard(port, data_dir, log_path)
    try:
        yield f"http://127.0.0.1:{port}/app"
    finally:
        stop_dashboard(proc)
        # keep the server log of the last run for post-mortems
        shutil.copy(log_path, Path(tempfile.gettempdir()) / "amqadf-browser-server.log")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def open_page(browser: Any, server: str) -> Iterator[Callable[..., Any]]:
    """``open_page(query="")`` -> a loaded dashboard page (closed after the test)."""
    contexts = []

    def _open(query: str = "") -> Any:
        ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(server + query, wait_until="domcontentloaded", timeout=45_000)
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.25,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # element not rendered yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


_FONT_PX = "e => e.isConnected ? parseFloat(getComputedStyle(e).fontSize) : NaN"


def font_px(page: Any, selector: str, timeout: float = 20.0) -> float:
    """The computed font size (px) of the first element matching ``selector``, read from
    a connected element (views re-render their HTML every refresh: a detached one gives
    NaN, so it is read again until it gives a number)."""
    return wait_until(
        lambda: (v := page.locator(selector).first.evaluate(_FONT_PX, timeout=5_000)) == v and v,
        timeout=timeout,
        what=f"the font size of {selector}",
    )


def data_attr(page: Any, selector: str, attr: str) -> str | None:
    """The attribute of the first element matching ``selector`` (shadow DOM pierced)."""
    loc = page.locator(selector)
    if loc.count() == 0:
        return None
    return loc.first.get_attribute(attr)


def int_attr(page: Any, selector: str, attr: str) -> int | None:
    v = data_attr(page, selector, attr)
    return int(v) if v not in (None, "") else None


#: Elements an operator reads or clicks: each must lie inside its box (its table, else
#: its card) and inside the viewport's width.
CLIP_SELECTOR = (
    "button, input, select, label, canvas, .bk-input-group, .amq-card-title, "
    ".tabulator-col, .amq-latest-cell, .amq-latest-value, .amq-tile, .amq-tile-value, "
    ".amq-hdr-item"
)

# Walks the page through every shadow root (Panel renders each component in one).
_CLIPPED_JS = """
([selector, boxSelector]) => {
  const all = []
  const collect = root => {
    for (const el of root.querySelectorAll('*')) {
      all.push(el)
      if (el.shadowRoot) collect(el.shadowRoot)
    }
  }
  collect(document)
  const up = el => el.parentElement || (el.getRootNode() || {}).host || null
  const boxOf = el => {
    for (let e = up(el); e; e = up(e)) if (e.matches && e.matches(boxSelector)) return e
    return null
  }
  const visible = el => {
    for (let e = el; e; e = up(e)) {
      if (!e.getBoundingClientRect) continue
      const st = getComputedStyle(e)
      if (st.display === 'none' || st.visibility === 'hidden') return false
    }
    return true
  }
  const vw = document.documentElement.clientWidth
  const out = []
  for (const el of all) {
    if (!el.matches(selector)) continue
    const r = el.getBoundingClientRect()
    if (r.width < 1 || r.height < 1 || !visible(el)) continue
    const what = (el.className && typeof el.className === 'string' ? el.className : el.tagName)
      + ' "' + (el.textContent || '').trim().slice(0, 30) + '"'
    const at = `${r.left|0},${r.top|0}..${r.right|0},${r.bottom|0}`
    if (r.left < -1 || r.right > vw + 1) out.push(`${what}: ${at} outside the page (${vw})`)
    const box = boxOf(el)
    if (box) {
      const b = box.getBoundingClientRect()
      const inside = r.left >= b.left - 1 && r.right <= b.right + 1
        && r.top >= b.top - 1 && r.bottom <= b.bottom + 1
      const name = String(box.className).split(' ').pop()
      if (!inside) out.push(`${what}: ${at} outside ${name} `
        + `${b.left|0},${b.top|0}..${b.right|0},${b.bottom|0}`)
    }
    // text cut short inside the element itself (ellipsis, hidden overflow)
    if (!['CANVAS', 'INPUT', 'SELECT'].includes(el.tagName) && el.textContent.trim()
        && el.scrollWidth > el.clientWidth + 1
        && getComputedStyle(el).overflowX !== 'visible')
      out.push(`${what}: text cut (${el.scrollWidth} px in ${el.clientWidth} px)`)
  }
  return out
}
"""


def clipped_elements(
    page: Any, selector: str = CLIP_SELECTOR, box: str = ".tabulator, .amq-card"
) -> list[str]:
    """What of ``selector`` lies outside its ``box`` ancestor (the nearest one, shadow
    DOM pierced), outside the viewport's width, or has its text cut: one line each."""
    return page.evaluate(_CLIPPED_JS, [selector, box])
