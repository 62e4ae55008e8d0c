"""Messages in the shape of ``assets/profiles/eos-m290-example.toml`` for tests: the
machine's own field names, epoch-ms ``ts``, °C and mV, a material whose melt pool
runs at about 2,300 K (so the simulator's limits and baselines would not fit)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

EOS_PROFILE = Path(__file__).resolve().parents[1] / "assets" / "profiles" / "eos-m290-example.toml"


def eos_messages(
    n: int,
    *,
    start: int = 0,
    t0_ms: int | None = None,
    points_per_layer: int = 2_000,
    hot: tuple[int, int] | None = None,
    seed: int = 1,
    rate_hz: float = 20_000.0,
) -> list[dict[str, Any]]:
    """Messages ``start .. start + n`` of a ``rate_hz`` raster over a 20 x 20 mm square.

    ``hot=(a, b)``: points a..b run 500 K hot (threshold alerts and SPC signals)."""
    rng = np.random.default_rng(seed + start)
    i = np.arange(start, start + n)
    t0 = int(time.time() * 1000) if t0_ms is None else t0_ms
    k = i % points_per_layer
    temp_c = 2026.85 + rng.normal(0.0, 25.0, n)  # about 2,300 K
    if hot is not None:
        temp_c[(i >= hot[0]) & (i < hot[1])] += 500.0
    cols = {
        "ts": (t0 + (i * 1000.0 / rate_hz).astype(np.int64)).tolist(),
        "pos_x": (40.0 + (k % 100) * 0.2).tolist(),
        "pos_y": (40.0 + (k // 100) * 0.2).tolist(),
        "layer_no": (1 + i // points_per_layer).tolist(),
        "job": ["job-42"] * n,
        "mp_temp_C": temp_c.tolist(),
        "photodiode_mV": (2000.0 + rng.normal(0.0, 60.0, n)).tolist(),
        "laser_W": (280.0 + rng.normal(0.0, 2.0, n)).tolist(),
        "chamber_o2_ppm": (150.0 + rng.normal(0.0, 5.0, n)).tolist(),
    }
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
