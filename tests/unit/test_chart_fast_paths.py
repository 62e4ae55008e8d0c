"""The charts' shortcuts for the usual case give what the general path gives."""

from __future__ import annotations

import numpy as np

from am_qadf.monitoring.control_charts import EWMAChart, _ewma_recursion


def _run(chunks: list[int], x: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    ch = EWMAChart(baseline_points=200, lam=0.05, L=2.5)  # exact limits: steady after ~360
    idx, val, score, stats, pos = [], [], [], [], 0
    for size in chunks:
        upd = ch.update(x[pos : pos + size], np.arange(pos, pos + size))
        for g in upd.groups:
            idx += g.index.tolist()
            val += g.value.tolist()
            score += g.score.tolist()
        stats.append(upd.statistic)
        pos += size
    return idx, np.array(val), np.array(score), np.concatenate(stats)


def test_ewma_steady_width_shortcut_matches_point_by_point_widths() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 1.0, 3000)
    x[900:1100] += 1.5  # violations while the limits still widen and after they are steady
    x[300:330] += 2.0
    whole = _run([3000], x)
    assert any(i < 360 for i in whole[0]) and any(i > 900 for i in whole[0])
    for chunks in ([200, 100, 50, 2650], [200, *[7] * 400]):
        chunks = [*chunks, 3000 - sum(chunks)]
        got = _run(chunks, x)
        # the EWMA restarts its closed form at each batch: equal up to rounding
        assert got[0] == whole[0]
        for a, b in zip(got[1:], whole[1:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9)


def test_ewma_recursion_one_block_equals_the_blocked_loop() -> None:
    rng = np.random.default_rng(1)
    dev = rng.normal(0.0, 1.0, 5000)
    one = _ewma_recursion(dev[:900], 0.3, 0.01, {})
    assert np.array_equal(one, _ewma_recursion(dev, 0.3, 0.01, {})[:900])
    assert _ewma_recursion(dev[:0], 0.3, 0.01, {}).size == 0


def test_ar_residuals_match_a_plain_sum_for_any_history() -> None:
    from am_qadf.monitoring.autocorrelation import ARFit

    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 1.0, 400)
    for phi in ((0.6,), (0.5, -0.2), (0.4, 0.1, -0.3)):
        fit = ARFit(0.0, phi, 1.0)
        p = len(phi)
        for hist in (None, np.array([]), rng.normal(size=1), rng.normal(size=p + 2)):
            h = np.zeros(p) if hist is None else np.asarray(hist)[-p:]
            yy = np.concatenate((np.zeros(p - h.size), h, y))
            pred = np.zeros(y.size)
            for i, ph in enumerate(phi, start=1):
                pred += ph * yy[p - i : p - i + y.size]
            assert np.array_equal(fit.residuals(y, hist), y - pred)


def test_recent_values_are_the_last_n_whatever_the_batches() -> None:
    from am_qadf.monitoring.control_charts import _Recent

    rng = np.random.default_rng(4)
    r, kept = _Recent(50), []
    assert r.data.size == 0
    for size in (3, 20, 0, 40, 7, 80, 1, 1, 49, 13, 2):
        x = rng.normal(size=size)
        kept += x.tolist()
        r.push(x)
        x[:] = 0.0  # the caller may reuse its array
        if size % 2:  # read now and then: reading joins the parts
            assert r.data.tolist() == kept[-50:]
    assert r.data.tolist() == kept[-50:]


def test_ewma_steady_width_follows_the_segment_level_error() -> None:
    # the steady width is kept between pieces; a changed level error must show at once
    ch = EWMAChart(baseline_points=200, lam=0.05, L=3.0)
    ch.update(np.random.default_rng(1).normal(0.0, 1.0, 1000))
    before = ch.limits()["ucl"]
    ch.level_sd = 2.0
    widened = ch.limits()["ucl"]
    assert widened > before
    assert widened == ch.baseline["mean"] + float(np.hypot(ch._noise_width(1e9), 3.0 * 2.0))
    ch.level_sd = 0.0
    assert ch.limits()["ucl"] == before


def test_one_segment_shortcut_gives_the_cuts_of_the_general_path() -> None:
    # a batch within one layer skips finding label changes; text labels never do
    rng = np.random.default_rng(3)
    x = rng.normal(100.0, 2.0, 12_000)
    x[7000:7400] += 9.0
    kw = dict(sigma_method="ar", recenter_points=300, residual_L=5.0, variance_L=6.0)

    def run(labels: np.ndarray) -> list[tuple[str, list[int]]]:
        ch = EWMAChart(baseline_points=2000, lam=0.05, **kw)
        out = []
        for s in range(0, x.size, 1000):
            upd = ch.update(x[s : s + 1000], np.arange(s, s + 1000), segment=labels[s : s + 1000])
            out += [(g.statistic, g.index.tolist()) for g in upd.groups]
        return out

    layers = np.repeat(np.arange(8), 1500)  # batches in one layer (the shortcut) and across two
    same_as_text = np.array([f"L{v:02d}" for v in layers])  # labels without it
    got = run(layers)
    assert got and got == run(same_as_text)


def test_rate_of_change_positions_with_and_without_missing_values() -> None:
    from am_qadf.monitoring.batch_view import ArrayBatchView
    from am_qadf.monitoring.thresholds import RateOfChangeRule

    x = np.array([10.0, 11.0, 40.0, 41.0, 12.0])
    full = RateOfChangeRule("p", max_change=20.0).evaluate(ArrayBatchView({"p": x}))[0]
    assert full.positions.tolist() == [2, 4] and full.values.tolist() == [29.0, -29.0]
    gappy = np.array([10.0, np.nan, 11.0, 40.0, np.nan, 41.0, 12.0])
    got = RateOfChangeRule("p", max_change=20.0).evaluate(ArrayBatchView({"p": gappy}))[0]
    assert got.positions.tolist() == [3, 6] and got.values.tolist() == [29.0, -29.0]
