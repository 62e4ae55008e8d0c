"""SPC on autocorrelated signals (issue 16): the AR baseline model, limits against the true
long-run sigma, per-layer recentring, residual statistics, and episodes that never hide a
new defect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from am_qadf.monitoring import AlertManager, AlertProcessor, SPCProcessor
from am_qadf.monitoring.autocorrelation import (
    ARFit,
    ar_filter,
    ar_impulse_response,
    fit_ar,
    pair_limit,
)
from am_qadf.monitoring.control_charts import ControlChart, CUSUMChart, EWMAChart, IMRChart


def ar1(n: int, phi: float, seed: int, sigma_e: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ar_filter(rng.normal(0.0, sigma_e, n + 2000), (phi,))[2000:]


def ewma_sd_ar1(lam: float, phi: float, sigma_e: float = 1.0) -> float:
    """Exact steady sd of an EWMA of an AR(1): var = λ/(2-λ)·γ0·(1+φa)/(1-φa), a = 1-λ."""
    a = 1.0 - lam
    g0 = sigma_e**2 / (1.0 - phi**2)
    return math.sqrt(lam / (2.0 - lam) * g0 * (1.0 + phi * a) / (1.0 - phi * a))


# --- the estimator ------------------------------------------------------------------


@pytest.mark.parametrize("phi", [0.0, 0.3, 0.7, 0.9])
def test_fit_ar_recovers_ar1_and_long_run_sigma(phi: float) -> None:
    x = ar1(50_000, phi, seed=int(phi * 10))
    f = fit_ar(x)
    assert f.order == (0 if phi == 0 else 1) or abs(f.phi[0] - phi) < 0.02
    if phi:
        assert f.phi[0] == pytest.approx(phi, abs=0.02)
    true_lr = 1.0 / (1.0 - phi)  # sigma_e / (1 - phi)
    assert f.long_run_sigma == pytest.approx(true_lr, rel=0.10)
    assert f.marginal_sigma == pytest.approx(1.0 / math.sqrt(1.0 - phi**2), rel=0.05)


def test_filter_sd_matches_closed_forms() -> None:
    f = ARFit(0.0, (0.7,), 1.0)
    assert f.ewma_sd(0.05) == pytest.approx(ewma_sd_ar1(0.05, 0.7), rel=1e-6)
    n = 5
    g = [0.7**k / (1 - 0.49) for k in range(n)]
    var_mean = (g[0] + 2 * sum((1 - k / n) * g[k] for k in range(1, n))) / n
    assert f.filter_sd(np.full(n, 1 / n)) == pytest.approx(math.sqrt(var_mean), rel=1e-6)
    assert ar_impulse_response((0.5, 0.2))[:3].tolist() == pytest.approx([1.0, 0.5, 0.45])


def test_fit_ar_segments_remove_level_shifts() -> None:
    x = np.random.default_rng(1).normal(size=6000)
    seg = np.repeat([0, 1, 2], 2000)
    shifted = x + np.array([0.0, 5.0, -5.0])[seg]
    assert sum(fit_ar(shifted).phi) > 0.8  # the steps pass for strong autocorrelation
    f = fit_ar(shifted, segments=seg)
    assert f.order == 0 or abs(f.phi[0]) < 0.05
    assert f.sigma_e == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="segments"):
        fit_ar(x, segments=seg[:10])
    with pytest.raises(ValueError, match="at least 3"):
        fit_ar([1.0, 2.0])


# --- limits on known AR(1) series ---------------------------------------------------------


@pytest.mark.parametrize("phi", [0.3, 0.7, 0.9])
def test_ewma_limits_follow_the_true_sd_of_the_statistic(phi: float) -> None:
    x = ar1(20_000, phi, seed=3)
    lam, L = 0.05, 3.0
    ch = EWMAChart(20_000, lam=lam, L=L, sigma_method="ar", exact_limits=False)
    ch.update(x)
    half = ch.ucl - ch.center
    assert half == pytest.approx(L * ewma_sd_ar1(lam, phi), rel=0.10)
    mr = EWMAChart(20_000, lam=lam, L=L, exact_limits=False)
    mr.update(x)
    # The moving range sees sigma·sqrt(1 - phi): far too tight.
    assert (mr.ucl - mr.center) < 0.7 * half


def test_cusum_and_imr_sigma_under_ar() -> None:
    x = ar1(30_000, 0.7, seed=4)
    c = CUSUMChart(30_000, sigma_method="ar")
    c.update(x)
    assert c.sigma == pytest.approx(1.0 / 0.3, rel=0.10)  # long-run sigma of the mean
    i = IMRChart(30_000, sigma_method="ar")
    i.update(x)
    assert i.sigma == pytest.approx(1.0 / math.sqrt(0.51), rel=0.05)  # sd of one value
    assert i.capability(lsl=-10, usl=10)["cp"] == pytest.approx(20 / (6 * i.sigma))


def test_ar_limits_hold_the_in_control_rate() -> None:
    x = ar1(400_000, 0.7, seed=5)
    ar = EWMAChart(5_000, lam=0.05, L=3.5, sigma_method="ar")
    mr = EWMAChart(5_000, lam=0.05, L=3.5)
    n_ar = sum(len(g) for b in range(0, x.size, 1000) for g in ar.update(x[b : b + 1000]).groups)
    n_mr = sum(len(g) for b in range(0, x.size, 1000) for g in mr.update(x[b : b + 1000]).groups)
    assert n_ar < 0.002 * x.size < n_mr


def test_ar_baseline_round_trips() -> None:
    x = ar1(3000, 0.6, seed=6)
    ch = EWMAChart(3000, lam=0.1, sigma_method="ar", residual_L=5.0, variance_L=6.0)
    ch.update(x)
    again = ControlChart.from_dict(ch.to_dict())
    assert again.limits() == ch.limits() and again.model == ch.model
    assert again.residual_limits() == ch.residual_limits()
    with pytest.raises(ValueError, match="sigma_method"):
        EWMAChart(100, sigma_method="hac")


# --- recentring and residual statistics --------------------------------------------------


def test_recentring_ignores_layer_shifts_but_sees_a_shift_within_a_layer() -> None:
    rng = np.random.default_rng(7)
    n, per = 60_000, 10_000
    seg = np.arange(n) // per
    x = rng.normal(size=n) + rng.normal(0.0, 3.0, seg.max() + 1)[seg]  # 3-sigma layer offsets
    kw = {"lam": 0.01, "L": 4.0, "sigma_method": "ar"}
    plain, rec = EWMAChart(3000, **kw), EWMAChart(3000, recenter_points=500, **kw)
    fired_plain = fired_rec = 0
    for b in range(0, n, 1000):
        fired_plain += plain.update(x[b : b + 1000], segment=seg[b : b + 1000]).n_violations
        fired_rec += rec.update(x[b : b + 1000], segment=seg[b : b + 1000]).n_violations
    assert fired_plain > 1000 and fired_rec == 0
    assert rec.segment_level == pytest.approx(float(np.mean(x[-per:])), abs=0.2)
    y = rng.normal(size=5000) + 1.5
    y[:500] -= 1.5  # the level is learned before the defect begins
    upd = rec.update(y, segment=np.full(5000, 99))
    hits = [int(g.index[0]) for g in upd.groups if g.statistic == "ewma"]
    assert hits and hits[0] < n + 500 + 1000
    with pytest.raises(ValueError, match="segment"):
        rec.update([1.0, 2.0], segment=[1])


def test_residual_and_variance_statistics() -> None:
    x = ar1(30_000, 0.7, seed=8)
    ch = EWMAChart(5000, lam=0.01, L=4.5, sigma_method="ar", residual_L=5.0, variance_L=6.0)
    quiet = [g.statistic for b in range(0, x.size, 1000) for g in ch.update(x[b : b + 1000]).groups]
    assert quiet.count("residual") <= 1 and quiet.count("residual_variance") == 0
    y = ar1(4000, 0.7, seed=9)
    y[1000:1002] += 6.0 * math.sqrt(1 / 0.51)  # a 6-sigma spike of 2 points
    y[2000:] += ar1(2000, 0.7, seed=10)  # noise variance doubled
    groups = ch.update(y).groups
    spikes = [g for g in groups if g.statistic == "residual"]
    assert spikes and 30_000 + 1000 <= spikes[0].index[0] <= 30_000 + 1001
    var = [g for g in groups if g.statistic == "residual_variance"]
    assert var and 30_000 + 2000 <= var[0].index[0] < 30_000 + 3000
    assert np.all(var[0].score >= 1.0)


def test_pair_limit_matches_the_single_point_rate() -> None:
    # independent values: Phi(-c)^2 = Phi(-L) in closed form
    c = pair_limit(0.0, 4.0)
    tail = 0.5 * math.erfc(c / math.sqrt(2))
    assert tail * tail == pytest.approx(0.5 * math.erfc(4.0 / math.sqrt(2)), rel=1e-3)
    # an AR(1) series: pairs beyond c are about as frequent as single values beyond L
    x = ar1(2_000_000, 0.7, seed=21) * math.sqrt(1 - 0.49)  # unit marginal sd
    L = 3.0
    c = pair_limit(ARFit(0.0, (0.7,), 1.0).rho1, L)
    singles = np.count_nonzero(x > L)
    pairs = np.count_nonzero(np.minimum(x[1:], x[:-1]) > c)
    assert pair_limit(0.9, L) > c > pair_limit(0.3, L) and c < L
    assert 0.8 < pairs / singles < 1.25, (pairs, singles)


def test_two_values_in_a_row_find_a_spike_below_the_single_point_limit() -> None:
    rng = np.random.default_rng(22)
    ch = EWMAChart(5000, lam=0.01, L=4.5, sigma_method="ar", residual_L=5.0)
    ch.update(rng.normal(size=5000))
    c = ch.residual_limits()["deviation_ucl"]
    # neighbours in the tail are taken as correlated at least 0.5 (start transients)
    # (measured from the local mean, whose own noise adds a quarter of a percent)
    assert c == pytest.approx(pair_limit(0.5, 5.0) * ch.baseline["sigma_marginal"], rel=0.01)
    y = rng.normal(0.0, 0.1, 3000)  # quiet noise: nothing else is found
    y[1000] += 4.6  # one value at 4.6 sigma: below the 5-sigma single-point limit
    y[2000:2002] += 4.6  # two in a row: found at the second
    found = [i for g in ch.update(y).groups if g.statistic == "residual" for i in g.index]
    assert found == [5000 + 2001]


def test_a_lasting_step_is_not_taken_for_one_long_spike() -> None:
    x = ar1(11_000, 0.9, seed=24) * math.sqrt(1 - 0.81)  # unit marginal sd
    ch = EWMAChart(5000, lam=0.01, L=4.5, sigma_method="ar", residual_L=5.0)
    ch.update(x[:5000])
    y = x[5000:].copy()
    y[1000:4000] += 8.0  # a large step that lasts: far from the level all along
    upd = ch.update(y)
    res = [int(i) - 5000 for g in upd.groups if g.statistic == "residual" for i in g.index]
    ewma = [int(i) - 5000 for g in upd.groups if g.statistic == "ewma" for i in g.index]
    # the step's start is found (and the EWMA takes over); its length is not a spike
    assert res and 1000 <= res[0] <= 1001 and not [i for i in res if 1200 <= i < 4000], res
    assert ewma and ewma[0] < 1100


def test_the_level_error_adds_to_the_ewma_limit_in_quadrature() -> None:
    rng = np.random.default_rng(23)
    ch = EWMAChart(3000, lam=0.01, L=4.0, sigma_method="ar", recenter_points=500)
    x = rng.normal(size=9000)
    ch.update(x, segment=np.arange(9000) // 3000)
    assert ch.level_sd > 0
    b = ch.baseline
    noise = 4.0 * b["sigma"] * math.sqrt(0.01 / 1.99)  # steady width without level error
    assert ch.ucl - ch.center == pytest.approx(math.hypot(noise, 4.0 * ch.level_sd), rel=1e-6)


# --- episodes ----------------------------------------------------------------------------


def test_episode_ends_after_a_quiet_stretch() -> None:
    m = AlertManager(cooldown_points=100)
    a = m.raise_alert("t", "r", 1.0, index=0)
    assert m.raise_alert("t", "r", 1.0, index=99) is None  # within the stretch: counted
    assert m.raise_alert("t", "r", 1.0, index=198) is None  # the stretch runs from the last
    b = m.raise_alert("t", "r", 1.0, index=298)  # 100 quiet points: a new episode
    assert a is not None and b is not None and m.get(a.id).repeats == 2


def test_escalation_raises_a_new_alert_one_step_up() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", "spc:ewma:rule_1", 1.0, index=0, severity="info", level=0, direction=1)
    assert m.raise_alert("t", "spc:ewma:rule_1", 1.5, index=5, level=0, direction=1) is None
    e = m.raise_alert("t", "spc:ewma:rule_1", 3.0, index=9, severity="info", level=1, direction=1)
    assert e is not None and e.severity == "warning" and e.details["escalates"] == a.id
    e2 = m.raise_alert("t", "spc:ewma:rule_1", 7.0, index=12, level=2, direction=1)
    assert e2 is not None and e2.severity == "critical"
    # critical already: a further rise is kept on the alert, not raised again
    assert m.raise_alert("t", "spc:ewma:rule_1", 20.0, index=15, level=4, direction=1) is None
    assert m.get(e2.id).details["level"] == 4 and m.episode_level("t", "spc:ewma:rule_1") == 4
    # the other side of the center is a new episode
    o = m.raise_alert("t", "spc:ewma:rule_1", -3.0, index=20, level=0, direction=-1)
    assert o is not None and "escalates" not in o.details
    assert m.continues_episode("t", "spc:ewma:rule_1", index=21, direction=-1)
    assert not m.continues_episode("t", "spc:ewma:rule_1", index=21, level=3, direction=-1)


def _batches(x: np.ndarray, size: int = 1000) -> list[list[dict[str, float]]]:
    return [[{"temperature": float(v)} for v in x[b : b + size]] for b in range(0, x.size, size)]


def test_a_new_defect_during_an_open_episode_is_reported() -> None:
    rng = np.random.default_rng(11)
    x = 1900.0 + 10.0 * rng.normal(size=12_000)
    x[4000:7000] += 8.0  # a small shift keeps the EWMA just beyond its limit: episode open
    x[6000:7000] += 40.0  # a second defect starts while that episode is open
    spc = SPCProcessor(["temperature"], chart="ewma", baseline_points=2000, lam=0.1, L=3.0)
    ap = AlertProcessor(AlertManager(cooldown_points=1000), spc=spc)
    alerts = [a for b in _batches(x) for a in ap(b)["alerts"]]
    ewma = [a for a in alerts if a["rule"] == "spc:ewma:rule_1"]
    first = [a for a in ewma if 4000 <= a["index"] < 6000]
    second = [a for a in ewma if 6000 <= a["index"] < 6100]
    assert first and second, [(a["index"], a["severity"]) for a in ewma]
    assert second[0]["details"]["escalates"] and second[0]["severity"] == "critical"


def test_a_defect_on_the_other_side_is_reported() -> None:
    rng = np.random.default_rng(12)
    x = 1900.0 + 10.0 * rng.normal(size=8000)
    x[3000:4000] += 30.0
    x[4000:5000] -= 30.0  # starts right away: the first episode's cooldown still runs
    spc = SPCProcessor(["temperature"], chart="ewma", baseline_points=2000, lam=0.2, L=3.0)
    ap = AlertProcessor(AlertManager(cooldown_points=2000), spc=spc)
    alerts = [a for b in _batches(x, 500) for a in ap(b)["alerts"]]
    low = [a for a in alerts if a["rule"] == "spc:ewma:rule_1" and a["value"] < 1900.0]
    assert low and 4000 <= low[0]["index"] < 4100


def test_spc_processor_recentres_on_the_message_layer() -> None:
    rng = np.random.default_rng(13)
    n, per = 40_000, 8_000
    layer = np.arange(n) // per
    x = 1900.0 + 10.0 * rng.normal(size=n) + rng.normal(0.0, 40.0, layer.max() + 1)[layer]
    msgs = [{"temperature": float(v), "layer": int(k)} for v, k in zip(x, layer, strict=True)]
    for m in msgs[9_000:9_050]:
        del m["layer"]  # a message without a layer continues the layer before
    opts = {"chart": "ewma", "baseline_points": 2000, "lam": 0.01, "L": 4.0, "sigma_method": "ar"}
    plain = SPCProcessor(["temperature"], **opts)
    rec = SPCProcessor(["temperature"], recenter_points=500, **opts)
    n_plain = sum(plain(msgs[b : b + 1000])["n_violations"] for b in range(0, n, 1000))
    out = [rec(msgs[b : b + 1000]) for b in range(0, n, 1000)]
    assert n_plain > 1000 and sum(o["n_violations"] for o in out) == 0
    last = out[-1]["signals"]["temperature"]
    assert last["segment_level"] == pytest.approx(float(np.mean(x[-per:])), abs=3.0)


def test_learning_window_is_watched_once_the_typical_layer_is_known() -> None:
    rng = np.random.default_rng(14)
    per, n_layers = 5000, 12
    x = rng.normal(size=per * n_layers)
    seg = np.arange(x.size) // per
    start = per * (n_layers - 1)
    x[start : start + 800] += 3.0  # a shift from the first point of the last layer
    ch = EWMAChart(2000, lam=0.05, L=4.0, sigma_method="ar", recenter_points=500)
    first = None
    for b in range(0, x.size, 250):
        upd = ch.update(x[b : b + 250], segment=seg[b : b + 250])
        # (earlier layers may have a false alert: L = 4 allows one in some 10^4 points)
        hits = [int(i) for g in upd.groups if g.statistic == "ewma" for i in g.index if i >= start]
        if hits and first is None:
            first = hits[0]
    assert first is not None and start <= first < start + 500


def test_recentring_does_not_depend_on_batching() -> None:
    rng = np.random.default_rng(15)
    n, per = 60_000, 6_000
    seg = np.arange(n) // per
    x = ar1(n, 0.6, seed=15) + rng.normal(0.0, 2.0, seg.max() + 1)[seg]
    x[20_000:21_000] += 2.0
    x[33_000:33_003] += 9.0

    def run(size: int) -> list[tuple[str, int]]:
        ch = EWMAChart(
            3000, lam=0.01, L=4.0, sigma_method="ar", recenter_points=300, residual_L=5.0,
            variance_L=6.0,
        )  # fmt: skip
        out = []
        for b in range(0, n, size):
            upd = ch.update(x[b : b + size], segment=seg[b : b + size])
            out += [(g.statistic, int(i)) for g in upd.groups for i in g.index]
        return sorted(out)

    assert run(1000) == run(337) != []
