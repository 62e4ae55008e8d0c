"""Control charts: textbook constants, hand-computed limits, EWMA/CUSUM series, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am_qadf.monitoring.chart_constants import c4, chart_constants, d2, d3
from am_qadf.monitoring.control_charts import (
    ControlChart,
    CUSUMChart,
    EWMAChart,
    IMRChart,
    XbarRChart,
    XbarSChart,
    make_chart,
    process_capability,
)

# Montgomery, Introduction to Statistical Quality Control, Appendix VI (3 decimals).
TEXTBOOK = {
    # n: (d2, d3, c4, A2, A3, B3, B4, D3, D4)
    2: (1.128, 0.853, 0.7979, 1.880, 2.659, 0.0, 3.267, 0.0, 3.267),
    3: (1.693, 0.888, 0.8862, 1.023, 1.954, 0.0, 2.568, 0.0, 2.574),
    5: (2.326, 0.864, 0.9400, 0.577, 1.427, 0.0, 2.089, 0.0, 2.114),
    7: (2.704, 0.833, 0.9594, 0.419, 1.182, 0.118, 1.882, 0.076, 1.924),
    10: (3.078, 0.797, 0.9727, 0.308, 0.975, 0.284, 1.716, 0.223, 1.777),
    15: (3.472, 0.756, 0.9823, 0.223, 0.789, 0.428, 1.572, 0.347, 1.653),
    20: (3.735, 0.729, 0.9869, 0.180, 0.680, 0.510, 1.490, 0.415, 1.585),
    25: (3.931, 0.708, 0.9896, 0.153, 0.606, 0.565, 1.435, 0.459, 1.541),
}


@pytest.mark.parametrize("n", sorted(TEXTBOOK))
def test_constants_match_textbook(n: int) -> None:
    k = chart_constants(n)
    want = dict(
        zip(("d2", "d3", "c4", "A2", "A3", "B3", "B4", "D3", "D4"), TEXTBOOK[n], strict=True)
    )
    for name, value in want.items():
        assert getattr(k, name) == pytest.approx(value, abs=1.5e-3), name


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@pytest.mark.parametrize("n", [2, 4, 9, 17, 25])
def test_d2_is_the_expected_range_of_normals(n: int) -> None:
    # d2(n) = integral of 1 - Phi^n - (1 - Phi)^n over the real line.
    x = np.linspace(-9, 9, 6001)
    p = _phi(x)
    assert d2(n) == pytest.approx(np.trapezoid(1 - p**n - (1 - p) ** n, x), abs=2e-5)


def test_c4_closed_form_and_limits() -> None:
    assert c4(2) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    assert all(c4(n) < c4(n + 1) < 1 for n in range(2, 25))


@pytest.mark.parametrize("bad", [1, 26, 0, -3])
def test_constants_reject_subgroup_sizes_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="subgroup size n"):
        chart_constants(bad)
    with pytest.raises(TypeError, match="subgroup size n"):
        d3(2.0)  # type: ignore[arg-type]


def test_imr_hand_computed() -> None:
    # x: 10 12 11 13 12 -> mean 11.6; MR 2 1 2 1 -> MR-bar 1.5; sigma = 1.5 / 1.128.
    ch = IMRChart(baseline_points=5)
    ch.update([10, 12, 11, 13, 12])
    lim = ch.limits()
    assert lim["center"] == pytest.approx(11.6)
    assert lim["ucl"] == pytest.approx(11.6 + 2.66 * 1.5, abs=2e-3)  # 2.66 = 3 / d2(2)
    assert lim["lcl"] == pytest.approx(11.6 - 2.66 * 1.5, abs=2e-3)
    assert lim["mr_ucl"] == pytest.approx(3.267 * 1.5, abs=2e-3)
    assert lim["mr_lcl"] == 0.0
    assert ch.sigma == pytest.approx(1.5 / 1.128, abs=1e-3)


def test_imr_flags_points_and_moving_ranges() -> None:
    ch = IMRChart(baseline_points=5, rules=[1])
    ch.update([10, 12, 11, 13, 12])
    upd = ch.update([12, 16, 12.5, 7], index=[100, 101, 102, 103])
    got = sorted((v.statistic, v.index) for v in upd.violations())
    # 16 > UCL 15.59; 7 < LCL 7.61; MR 4.5 (12.5 -> 7 is 5.5) > 4.9 only for the last step
    assert got == [("individual", 101), ("individual", 103), ("moving_range", 103)]
    assert upd.index.tolist() == [100, 101, 102, 103]


def test_xbar_r_hand_computed() -> None:
    # subgroups (n=4): [1,3,5,7] mean 4 range 6; [2,4,6,8] mean 5 range 6 -> X-bar-bar 4.5, R-bar 6
    ch = XbarRChart(baseline_points=8, subgroup_size=4)
    ch.update([1, 3, 5, 7, 2, 4, 6, 8])
    lim = ch.limits()
    assert lim["center"] == pytest.approx(4.5)
    assert lim["ucl"] == pytest.approx(4.5 + 0.729 * 6, abs=3e-3)  # A2(4) = 0.729
    assert lim["lcl"] == pytest.approx(4.5 - 0.729 * 6, abs=3e-3)
    assert lim["range_ucl"] == pytest.approx(2.282 * 6, abs=3e-3)  # D4(4) = 2.282
    assert lim["range_lcl"] == 0.0
    assert ch.sigma == pytest.approx(6 / 2.059, abs=1e-3)


def test_xbar_s_hand_computed() -> None:
    # n=3: [1,2,3] s=1; [2,4,6] s=2 -> S-bar 1.5, X-bar-bar 3
    ch = XbarSChart(baseline_points=6, subgroup_size=3)
    ch.update([1, 2, 3, 2, 4, 6])
    lim = ch.limits()
    assert lim["center"] == pytest.approx(3.0)
    assert lim["ucl"] == pytest.approx(3 + 1.954 * 1.5, abs=3e-3)  # A3(3)
    assert lim["stdev_ucl"] == pytest.approx(2.568 * 1.5, abs=3e-3)  # B4(3)
    assert lim["stdev_lcl"] == 0.0


def test_subgroups_span_batches_and_plot_at_the_last_member() -> None:
    ch = XbarRChart(baseline_points=10, subgroup_size=5, rules=[1])
    ch.update(np.tile([9.0, 10.0, 11.0, 10.0, 10.0], 2))
    a = ch.update([10, 10, 30])  # incomplete subgroup: nothing plotted yet
    assert a.index.size == 0
    b = ch.update([30, 30, 10, 10])
    assert b.index.tolist() == [14]  # points 10..14 form the subgroup
    assert [v.index for v in b.violations() if v.statistic == "xbar"] == [14]


def test_ewma_known_series() -> None:
    ch = EWMAChart.from_dict(
        {
            "kind": "ewma",
            "params": {"lam": 0.5, "L": 3.0},
            "baseline": {"mean": 10.0, "sigma": 2.0, "mr_bar": 2.256},
        }
    )
    upd = ch.update([12.0, 14.0, 10.0, 10.0])
    # z: 11, 12.5, 11.25, 10.625
    assert upd.statistic.tolist() == pytest.approx([11.0, 12.5, 11.25, 10.625])
    # exact limits: 10 ± 3*2*sqrt(0.5/1.5*(1-0.5^(2t)))
    w = [6 * math.sqrt(1 / 3 * (1 - 0.25**t)) for t in (1, 2, 3, 4)]
    assert w[0] == pytest.approx(3.0)
    assert not upd.violations()
    big = ch.update([20.0])  # z = 15.3125 > 10 + 3.46
    assert [v.value for v in big.violations()] == pytest.approx([15.3125])


def test_ewma_vectorised_matches_loop_over_long_batches() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(100, 5, 20_000)
    for lam in (0.01, 0.3, 0.9):
        ch = EWMAChart(baseline_points=100, lam=lam)
        ch.update(x[:100])
        z = ch.update(x[100:]).statistic
        ref = np.empty(x.size - 100)
        zz = ch.baseline["mean"]
        for i, v in enumerate(x[100:]):
            zz = lam * v + (1 - lam) * zz
            ref[i] = zz
        np.testing.assert_allclose(z, ref, rtol=1e-10)


def test_ewma_steady_limit_and_rule_restriction() -> None:
    ch = EWMAChart(baseline_points=50, lam=0.2, L=3.0, exact_limits=False)
    ch.update(np.random.default_rng(0).normal(0, 1, 50))
    w = ch.ucl - ch.center
    assert w == pytest.approx(3 * ch.sigma * math.sqrt(0.2 / 1.8))
    with pytest.raises(ValueError, match="lam"):
        EWMAChart(lam=1.5)


def test_cusum_known_series_with_reset() -> None:
    # mu0 = 10, sigma = 1, k = 0.5, h = 4: C+ = max(0, C+ + x - 10.5)
    ch = CUSUMChart.from_dict(
        {
            "kind": "cusum",
            "params": {"k": 0.5, "h": 4.0},
            "baseline": {"mean": 10.0, "sigma": 1.0, "mr_bar": 1.128},
        }
    )
    x = [11.0, 12.0, 9.0, 12.5, 12.0, 10.0, 8.0, 8.0, 8.0, 8.0]
    upd = ch.update(x)
    # C+: 0.5, 2.0, 0.5, 2.5, 4.0, 3.5, 1.0, 0, 0, 0 (never > 4)
    # C-: 0, 0, 0.5, 0, 0, 0, 1.5, 3.0, 4.5 -> signal, reset -> 1.5
    viol = [(v.statistic, v.index, v.value) for v in upd.violations()]
    assert viol == [("cusum_lower", 8, pytest.approx(4.5))]
    assert ch.upper == 0.0
    assert ch.lower == pytest.approx(1.5)


def test_cusum_without_reset_keeps_signalling() -> None:
    ch = CUSUMChart(baseline_points=4, k=0.5, h=2.0, reset_on_signal=False)
    ch.update([0.0, 1.0, 0.0, 1.0])  # mean 0.5, MR-bar 1 -> sigma 0.886
    upd = ch.update(np.full(10, 5.0))
    assert [v.index for v in upd.violations()] == list(range(4, 14))


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=300), st.integers(1, 60))
@settings(max_examples=40, deadline=None)
def test_cusum_reset_matches_a_plain_loop(values: list[float], split: int) -> None:
    base = {"mean": 0.0, "sigma": 1.0, "mr_bar": 1.128}
    ch = CUSUMChart.from_dict({"kind": "cusum", "params": {"k": 0.5, "h": 3.0}, "baseline": base})
    got = []
    for s in range(0, len(values), split):
        got += [(v.statistic, v.index) for v in ch.update(values[s : s + split]).violations()]
    ref, cp, cm = [], 0.0, 0.0
    for i, v in enumerate(values):
        cp, cm = max(0.0, cp + v - 0.5), max(0.0, cm - v - 0.5)
        if cp > 3.0:
            ref.append(("cusum_upper", i))
            cp = 0.0
        if cm > 3.0:
            ref.append(("cusum_lower", i))
            cm = 0.0
    assert sorted(got, key=lambda t: (t[1], t[0])) == sorted(ref, key=lambda t: (t[1], t[0]))


@pytest.mark.parametrize("kind", ["imr", "xbar_r", "xbar_s", "ewma", "cusum"])
def test_batch_splitting_never_changes_results(kind: str) -> None:
    x = np.random.default_rng(11).normal(50, 2, 3000)
    x[1500:1600] += 6  # a shift so that there is something to find
    x[200] = np.nan

    def run(sizes: list[int]) -> tuple[list, list]:
        ch = (
            make_chart(kind, 500, subgroup_size=5)
            if kind.startswith("xbar")
            else make_chart(kind, 500)
        )
        stats, viol, pos = [], [], 0
        for n in sizes:
            upd = ch.update(x[pos : pos + n])
            stats += upd.statistic.tolist()
            viol += [(v.statistic, v.rule, v.index) for v in upd.violations()]
            pos += n
        return stats, sorted(viol)

    whole = run([3000])
    assert whole[1], "the shift must be found"
    for sizes in ([1000] * 3, [7] * 428 + [4], [499, 2, 1, 2498]):
        s, v = run(sizes)
        np.testing.assert_allclose(s, whole[0], rtol=1e-9)
        assert v == whole[1]


def test_baseline_skips_nan_and_counts_it() -> None:
    ch = IMRChart(baseline_points=3)
    upd = ch.update([1.0, np.nan, float("inf"), 2.0])
    assert (upd.n_valid, upd.n_invalid, upd.n_baseline) == (2, 2, 2)
    assert not ch.is_ready and ch.baseline_progress == pytest.approx(2 / 3)
    ch.update([3.0])
    assert ch.is_ready and ch.center == pytest.approx(2.0)


@pytest.mark.parametrize("kind", ["imr", "xbar_r", "xbar_s", "ewma", "cusum"])
def test_to_dict_round_trip_is_json_and_fixes_limits(kind: str) -> None:
    opts = {"subgroup_size": 4} if kind.startswith("xbar") else {}
    ch = make_chart(kind, 40, **opts)
    ch.update(np.random.default_rng(1).normal(5, 1, 40))
    d = json.loads(json.dumps(ch.to_dict()))
    back = ControlChart.from_dict(d)
    assert type(back) is type(ch)
    assert back.is_ready and back.limits() == pytest.approx(ch.limits())


def test_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="unknown chart kind"):
        ControlChart.from_dict({"kind": "pareto", "params": {}})
    with pytest.raises(ValueError, match="kind"):
        ControlChart.from_dict({"params": {}})
    with pytest.raises(ValueError, match="not 'imr'"):
        IMRChart.from_dict(EWMAChart(10).to_dict())


def test_limits_fixed_until_recomputed() -> None:
    ch = IMRChart(baseline_points=100)
    rng = np.random.default_rng(5)
    ch.update(rng.normal(0, 1, 100))
    before = ch.limits()
    ch.update(rng.normal(10, 3, 100))  # shifted process: limits stay
    assert ch.limits() == before
    ch.recompute_limits()  # from the last 100 points seen
    assert ch.center == pytest.approx(10, abs=1.0)
    ch.recompute_limits(np.arange(100.0))
    assert ch.center == pytest.approx(49.5)
    with pytest.raises(ValueError, match="at least 100"):
        ch.recompute_limits([1.0, 2.0])


def test_capability() -> None:
    assert process_capability(10, 1, lsl=4, usl=19) == {
        "cp": 2.5,
        "cpk": 2.0,
        "cpu": 3.0,
        "cpl": 2.0,
    }
    one = process_capability(10, 2, usl=16)
    assert one["cp"] is None and one["cpk"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="usl"):
        process_capability(0, 1, lsl=3, usl=1)
    ch = IMRChart(baseline_points=3)
    assert ch.capability(0, 1)["cp"] is None
    ch.update([1.0, 2.0, 3.0])
    assert ch.capability(-10, 14)["cp"] == pytest.approx(24 / (6 * ch.sigma))


@pytest.mark.parametrize(
    ("call", "exc", "word"),
    [
        (lambda: make_chart("pie"), ValueError, "chart"),
        (lambda: IMRChart(baseline_points=1), ValueError, "baseline_points"),
        (lambda: IMRChart(baseline_points=2.5), TypeError, "baseline_points"),
        (lambda: IMRChart(L=-1), ValueError, "L"),
        (lambda: XbarRChart(baseline_points=5, subgroup_size=5), ValueError, "baseline_points"),
        (lambda: XbarSChart(subgroup_size=30), ValueError, "subgroup_size"),
        (lambda: CUSUMChart(h=0), ValueError, "h"),
        (lambda: IMRChart(rules=[9]), ValueError, "rules"),
        (lambda: IMRChart(5).update([1, 2], index=[1]), ValueError, "index"),
    ],
)
def test_argument_errors_name_the_argument(call, exc, word) -> None:
    with pytest.raises(exc, match=word):
        call()
