"""The 3D view shows the legend's colours (#13 item 10): a block of voxels of one value,
rendered by Chromium's WebGL through the dashboard's scene, has the colour map's colour
for that value on its top and on its sides (a lit scene shaded each face differently:
tops seen at a slant came out darker, a yellow looked olive)."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dashboard.theme import VOXEL_PALETTE, hex_to_rgb

from .conftest import VIEWPORT, _free_port, start_dashboard, stop_dashboard, wait_until


@pytest.fixture(scope="module")
def colour_page_url() -> Iterator[str]:
    data_dir = tempfile.mkdtemp(prefix="amqadf-colour-")
    port = _free_port()
    proc = start_dashboard(
        port,
        data_dir,
        Path(data_dir) / "panel-serve.log",
        extra_env={"AMQADF_SIMULATE": "0"},
        app="tests/browser/voxel_colour_app.py",
    )
    try:
        yield f"http://127.0.0.1:{port}/voxel_colour_app"
    finally:
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)


def test_rendered_voxels_have_the_colour_map_colour(browser, colour_page_url):
    expected = np.array([round(c * 255) for c in hex_to_rgb(VOXEL_PALETTE[4])])  # value 0.5
    background = np.array([round(c * 255) for c in hex_to_rgb("#f4f6f8")])
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(colour_page_url, wait_until="domcontentloaded", timeout=45_000)
        canvas = page.locator(".amq-colour-pane canvas").first
        wait_until(lambda: canvas.count() > 0, timeout=60, what="the 3D canvas")
        box = wait_until(
            lambda: (b := canvas.bounding_box()) and b["width"] > 100 and b, timeout=30
        )

        def block_pixels() -> list[np.ndarray] | None:
            px = _pixels(page.screenshot(clip=box, timeout=20_000))
            away = np.abs(px - background).max(axis=1) > 24
            grey = np.ptp(px, axis=1) < 24  # the plate outline
            drawn = px[away & ~grey]
            return [drawn] if drawn.shape[0] > 2000 else None

        (drawn,) = wait_until(block_pixels, timeout=90, what="the block drawn")
    finally:
        ctx.close()
    close = np.abs(drawn - expected).max(axis=1) <= 6
    shades = {tuple(c) for c in drawn[~close][:: max(1, (~close).sum() // 20)]}
    # top and both visible sides: the colour map's colour, bar edge pixels
    assert close.mean() >= 0.95, (close.mean(), expected.tolist(), sorted(shades)[:10])
