"""The detection matrix's two sigma units (bench/bench_detection_matrix.py, issue 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.bench_detection_matrix import MELT, Scenario, generate

N = 200_000


def test_white_noise_without_layer_shifts_differs_only_by_the_transients() -> None:
    st = generate(Scenario("white", layer_points=5_000), N, seed=0, first=10_000)
    for s in MELT:
        u = st.units[s]
        assert u.ratio == pytest.approx(1.0, abs=0.03)
        assert u.ratio == pytest.approx(u.transient_ratio, abs=0.01)
        assert u.transient_ratio > 1.0  # the 1.5-sigma start transients add a little


def test_layer_shifts_make_the_issue_unit_sqrt_1_plus_shift_squared_larger() -> None:
    sc = Scenario("shifts", phi=(0.5,), layer_points=500, layer_shift=1.0)
    st = generate(sc, N, seed=1, first=10_000)
    for s, sd in zip(MELT, sc.sigma, strict=True):
        u = st.units[s]
        assert u.layer == sd
        assert u.ratio == pytest.approx(math.sqrt(1.0 + 1.0**2), rel=0.05)  # 400 layers' offsets
        assert u.ratio == pytest.approx(u.expected_ratio, rel=0.02)


def test_defects_are_sized_in_the_chosen_unit() -> None:
    sc = Scenario("shifts", phi=(0.5,), layer_points=500, layer_shift=1.0)
    issue = generate(sc, N, seed=2, first=10_000)
    layer = generate(sc, N, seed=2, first=10_000, sigma_unit="layer")
    t_issue, t_layer = issue.cols["temperature"], layer.cols["temperature"]
    u = issue.units["temperature"]
    shifts = [d for d in issue.defects if d.kind == "shift"]
    assert shifts
    inside = np.zeros(N, bool)
    for d in issue.defects:
        inside[d.start : d.end] = True
    # same draws: only the defects differ, by (issue unit - layer unit) per defect sigma
    np.testing.assert_array_equal(t_issue[~inside], t_layer[~inside])
    for d in shifts:
        gap = t_issue[d.start : d.end] - t_layer[d.start : d.end]
        np.testing.assert_allclose(gap, d.sign * 2.0 * (u.issue - u.layer), rtol=1e-9)
    with pytest.raises(ValueError, match="sigma_unit"):
        generate(sc, 10_000, seed=2, first=1_000, sigma_unit="local")
