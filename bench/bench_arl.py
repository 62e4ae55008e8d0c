"""Average run lengths of the EWMA and CUSUM charts, against published tables.

For each chart and mean shift (in sigma), the run length from a fresh start to
the first signal is measured by simulation through the public chart classes
(baseline fixed at mean 0, sigma 1; ``update`` on batches; ``reset_state``
between runs), and printed beside two references:

* the published value: EWMA from Lucas & Saccucci (1990), asymptotic limits,
  as tabulated in Montgomery, *Introduction to SQC*, Table 9.11; two-sided
  tabular CUSUM with k = 0.5 from Hawkins (1993), Montgomery Table 9.3;
* a Markov-chain approximation (Brook & Evans 1972) computed here with 401
  states, which checks the quoted table values independently.

PASS when the simulated ARL is within 10 % of the published one (with
--runs 2000 the simulation's own standard error is about 2 %).

    python bench/bench_arl.py [--runs 2000] [--seed 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.monitoring.control_charts import ControlChart  # noqa: E402

SHIFTS = (0.0, 0.5, 1.0, 2.0, 3.0)
# (label, chart dict params, published ARL per shift in SHIFTS)
CASES = [
    ("EWMA lambda=0.10 L=2.814", "ewma", {"lam": 0.10, "L": 2.814}, (500, 31.3, 10.3, 4.36, 2.87)),
    ("EWMA lambda=0.05 L=2.615", "ewma", {"lam": 0.05, "L": 2.615}, (500, 28.8, 11.4, 5.2, 3.5)),
    ("EWMA lambda=0.20 L=2.962", "ewma", {"lam": 0.20, "L": 2.962}, (500, 41.8, 10.5, 3.7, 2.4)),
    ("CUSUM k=0.5 h=4", "cusum", {"k": 0.5, "h": 4.0}, (168, 26.6, 8.38, 3.34, 2.19)),
    ("CUSUM k=0.5 h=5", "cusum", {"k": 0.5, "h": 5.0}, (465, 38.0, 10.4, 4.01, 2.57)),
]

_phi = np.frompyfunc(lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0)), 1, 1)


def norm_cdf(x: np.ndarray) -> np.ndarray:
    return _phi(x).astype(np.float64)


def markov_ewma(lam: float, L: float, shift: float, m: int = 401) -> float:
    """Brook-Evans ARL of a two-sided EWMA with asymptotic limits, zero start."""
    h = L * math.sqrt(lam / (2.0 - lam))
    w = 2.0 * h / m
    c = -h + w * (np.arange(m) + 0.5)
    lo = (c[None, :] - w / 2 - (1 - lam) * c[:, None]) / lam - shift
    hi = (c[None, :] + w / 2 - (1 - lam) * c[:, None]) / lam - shift
    r = norm_cdf(hi.ravel()).reshape(m, m) - norm_cdf(lo.ravel()).reshape(m, m)
    arl = np.linalg.solve(np.eye(m) - r, np.ones(m))
    return float(arl[m // 2])


def markov_cusum_one_sided(k: float, h: float, shift: float, m: int = 401) -> float:
    """Brook-Evans ARL of C_t = max(0, C_{t-1} + x_t - k), signal when C_t > h; state 0 is
    the atom at zero, the others cells of width h/(m-1/2) centred on their midpoints."""
    w = h / (m - 0.5)
    c = w * np.arange(m)  # state 0 at 0; state j covers ((j-1/2)w, (j+1/2)w]
    r = np.empty((m, m))
    r[:, 0] = norm_cdf(w / 2 - c + k - shift)
    up = (c[None, 1:] + w / 2 - c[:, None] + k - shift).ravel()
    dn = (c[None, 1:] - w / 2 - c[:, None] + k - shift).ravel()
    r[:, 1:] = (norm_cdf(up) - norm_cdf(dn)).reshape(m, m - 1)
    arl = np.linalg.solve(np.eye(m) - r, np.ones(m))
    return float(arl[0])


def markov_cusum(k: float, h: float, shift: float) -> float:
    """Two-sided ARL from the one-sided ones: 1/ARL = 1/ARL+ + 1/ARL- (exact for k >= 1/2
    up to a negligible term, Lucas & Crosier 1982)."""
    up = markov_cusum_one_sided(k, h, shift)
    down = markov_cusum_one_sided(k, h, -shift)
    return 1.0 / (1.0 / up + 1.0 / down)


def simulate(kind: str, params: dict[str, float], shift: float, runs: int, seed: int) -> float:
    """Mean run length over ``runs`` runs through the public chart API."""
    p = {**params, "exact_limits": False} if kind == "ewma" else dict(params)
    chart = ControlChart.from_dict(
        {"kind": kind, "params": p, "baseline": {"mean": 0.0, "sigma": 1.0, "mr_bar": 1.128}}
    )
    rng = np.random.default_rng(seed)
    lengths = np.empty(runs)
    chunk = 256
    for r in range(runs):
        chart.reset_state()
        n = 0
        while True:
            x = rng.normal(shift, 1.0, chunk)
            upd = chart.update(x, np.arange(n, n + chunk))
            if upd.groups:
                lengths[r] = min(int(g.index[0]) for g in upd.groups) + 1
                break
            n += chunk
    return float(lengths.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"ARL by simulation ({args.runs} runs each) vs published tables and a Markov chain")
    print(f"{'chart':<26}{'shift':>6}{'simulated':>11}{'published':>11}{'Markov':>9}{'sim/pub':>9}")
    ok_all = True
    for label, kind, params, published in CASES:
        for s, pub in zip(SHIFTS, published, strict=True):
            sim = simulate(kind, params, s, args.runs, args.seed)
            if kind == "ewma":
                mc = markov_ewma(params["lam"], params["L"], s)
            else:
                mc = markov_cusum(params["k"], params["h"], s)
            ratio = sim / pub
            ok = abs(ratio - 1.0) <= 0.10
            ok_all = ok_all and ok
            print(
                f"{label:<26}{s:>6.1f}{sim:>11.2f}{pub:>11.2f}{mc:>9.2f}{ratio:>9.3f}  "
                f"{'PASS' if ok else 'FAIL'}"
            )
    print(f"{'ALL PASS' if ok_all else 'SOME FAIL'}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
