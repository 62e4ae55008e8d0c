"""Quality, SPC and alert processors: results, bad messages, state across batches, wiring."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from am_qadf.monitoring.alerts import AlertManager
from am_qadf.monitoring.batch_view import ArrayBatchView, ColumnCache, MessageBatchView
from am_qadf.monitoring.processors import (
    DEFAULT_SIGNALS,
    AlertProcessor,
    QualityProcessor,
    SPCProcessor,
    default_processors,
)
from am_qadf.monitoring.thresholds import GapRule, MissingDataRule, RateOfChangeRule, ThresholdRule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def msgs(values, start: int = 0, signal: str = "temperature", **extra) -> list[dict]:
    return [
        {
            "timestamp": T0 + timedelta(microseconds=50 * (start + i)),
            "x": float(i),
            "y": 2.0,
            "z": 0.04,
            "layer": 1,
            signal: v,
            **extra,
        }
        for i, v in enumerate(values)
    ]


def noise(n: int, seed: int = 0, mean: float = 1900.0, sd: float = 10.0) -> list[float]:
    return np.random.default_rng(seed).normal(mean, sd, n).tolist()


GARBAGE = [
    {"temperature": None},
    {"temperature": "hot"},
    {"temperature": float("nan")},
    {"temperature": float("inf")},
    {},
    {"temperature": [1, 2]},
    {"temperature": True},
    {"timestamp": "not a time", "temperature": 1900.0, "layer": "x"},
]


# quality
def test_quality_counts_missing_nan_and_out_of_range() -> None:
    qp = QualityProcessor(signals=["temperature", "power"], ranges={"temperature": (300, 4000)})
    batch = [
        {"temperature": 1900.0, "power": 280.0},
        {"temperature": None, "power": 280.0},
        {"power": "n/a"},
        {"temperature": 9000.0, "power": float("nan")},
    ]
    q = qp(batch)
    assert q["completeness"] == pytest.approx(4 / 8)
    assert q["missing_rate"] == pytest.approx(1 / 8)
    assert q["nan_rate"] == pytest.approx(3 / 8)
    assert q["out_of_range_rate"] == pytest.approx(1 / 2)
    assert q["temperature_mean"] == pytest.approx(5450.0) and q["power_std"] == 0.0
    assert q["n_messages"] == 4.0
    assert all(isinstance(v, float) for v in q.values())
    assert qp.totals["invalid"] == 4.0


def test_quality_empty_and_garbage_batches() -> None:
    qp = QualityProcessor()
    q = qp([])
    assert q["completeness"] == 1.0 and math.isnan(q["temperature_mean"])
    q = qp(GARBAGE + [None, "text", 3])  # type: ignore[list-item]
    assert 0.0 <= q["completeness"] < 0.2
    assert set(f"{s}_mean" for s in DEFAULT_SIGNALS) <= set(q)


def test_quality_range_validation() -> None:
    with pytest.raises(ValueError, match="ranges"):
        QualityProcessor(ranges={"temperature": (5, 1)})
    with pytest.raises(ValueError, match="ranges"):
        QualityProcessor(ranges={"temperature": 7})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="signals"):
        QualityProcessor(signals=[])


# SPC
def test_spc_result_is_json_and_reports_baseline_then_violations() -> None:
    spc = SPCProcessor(signals=["temperature"], chart="imr", baseline_points=50, rules=[1, 2])
    r1 = spc(msgs(noise(30)))
    t = r1["signals"]["temperature"]
    assert t["status"] == "baseline" and t["baseline_progress"] == pytest.approx(0.6)
    assert t["center"] is None and t["violations"] == []
    r2 = spc(msgs(noise(30, 1) + [2500.0], start=30))
    t = r2["signals"]["temperature"]
    assert t["status"] == "monitoring" and t["center"] == pytest.approx(1900, abs=10)
    assert t["latest"]["index"][-1] == 60
    v = [x for x in r2["violations"] if x["statistic"] == "individual" and x["index"] == 60]
    assert v and v[0]["index"] == 60 and v[0]["rule"] == 1 and v[0]["layer"] == 1
    assert v[0]["time"] == (T0 + timedelta(microseconds=50 * 60)).isoformat()
    assert v[0]["x"] == 30.0
    json.dumps(r2, allow_nan=False)


def test_spc_rule_2_across_batches() -> None:
    spc = SPCProcessor(signals=["temperature"], chart="imr", baseline_points=40, rules=[2])
    spc(msgs(noise(40)))
    spc(msgs([1905.0] * 5, start=40))
    r = spc(msgs([1905.0] * 5, start=45))
    assert [v["index"] for v in r["violations"]] == [48, 49]


def test_spc_handles_garbage_and_counts_it() -> None:
    spc = SPCProcessor(signals=["temperature"], chart="xbar_s", baseline_points=10, subgroup_size=5)
    r = spc(GARBAGE)
    t = r["signals"]["temperature"]
    assert t["n_invalid"] == 7 and t["n_valid"] == 1
    json.dumps(r, allow_nan=False)


def test_spc_same_batch_object_is_processed_once() -> None:
    spc = SPCProcessor(signals=["temperature"], baseline_points=10)
    batch = msgs(noise(8))
    a = spc(batch)
    b = spc(batch)
    assert a is b and spc.points_seen == 8
    spc(list(batch))  # a new list: processed again
    assert spc.points_seen == 16


def test_spc_baselines_round_trip_and_recompute() -> None:
    spc = SPCProcessor(
        signals=["temperature", "intensity"], chart="ewma", baseline_points=20, lam=0.2
    )
    batch = [{"temperature": t, "intensity": 1000.0 + i} for i, t in enumerate(noise(20))]
    spc(batch)
    saved = json.loads(json.dumps(spc.baselines()))
    assert set(saved) == {"temperature", "intensity"}
    fresh = SPCProcessor(signals=["temperature", "intensity"], chart="ewma", baseline_points=20)
    fresh.load_baselines(saved)
    r = fresh([{"temperature": 1900.0, "intensity": 1010.0}])
    assert r["signals"]["temperature"]["status"] == "monitoring"
    assert r["signals"]["temperature"]["center"] == pytest.approx(spc.charts["temperature"].center)
    with pytest.raises(ValueError, match="unknown signal"):
        fresh.load_baselines({"power": saved["temperature"]})
    spc([{"temperature": t, "intensity": 5.0} for t in noise(20, 3, mean=2000.0)])
    spc.recompute_limits("temperature")
    assert spc.charts["temperature"].center == pytest.approx(2000, abs=10)


def test_spc_capability_with_spec_limits() -> None:
    spc = SPCProcessor(
        signals=["temperature"], baseline_points=100, spec_limits={"temperature": (1800, 2000)}
    )
    r = spc(msgs(noise(100)))
    t = r["signals"]["temperature"]
    assert t["cp"] == pytest.approx(200 / (6 * t["sigma"]))
    assert 0 < t["cpk"] <= t["cp"]


def test_spc_per_layer_restarts_rules_but_keeps_limits() -> None:
    spc = SPCProcessor(
        signals=["temperature"], chart="imr", baseline_points=20, rules=[2], per_layer=True
    )
    base = [dict(m, layer=0) for m in msgs(noise(20))]
    spc(base)
    a = [dict(m, layer=0) for m in msgs([1905.0] * 5, start=20)]
    b = [dict(m, layer=1) for m in msgs([1905.0] * 5, start=25)]
    r = spc(a + b)
    assert r["violations"] == []  # the run of ten is split over two layers
    assert ("temperature", 1) in spc.charts and spc.charts[("temperature", 1)].is_ready
    assert r["signals"]["temperature"]["layer"] == 1


def test_spc_option_validation() -> None:
    with pytest.raises(ValueError, match="chart"):
        SPCProcessor(chart="pie")
    with pytest.raises(ValueError, match="rules"):
        SPCProcessor(chart="ewma", rules=[1, 2])
    with pytest.raises(TypeError):
        SPCProcessor(chart="imr", lam=0.3)  # EWMA option on an I-MR chart
    with pytest.raises(ValueError, match="spec_limits"):
        SPCProcessor(spec_limits={"temperature": 5})  # type: ignore[dict-item]


# thresholds
def view(**cols) -> ArrayBatchView:
    return ArrayBatchView({k: np.asarray(v, dtype=float) for k, v in cols.items()})


def test_rate_of_change_and_missing_data_carry_state() -> None:
    roc = RateOfChangeRule("power", max_change=50.0, lag=2)
    assert roc.evaluate(view(power=[280.0, 281.0])) == []
    c = roc.evaluate(view(power=[np.nan, 200.0, 201.0]))[0]
    assert c.positions.tolist() == [1, 2] and c.values.tolist() == [-80.0, -80.0]
    md = MissingDataRule("temperature", max_consecutive=4)
    assert md.evaluate(view(temperature=[1.0, np.nan, np.nan])) == []
    assert md.evaluate(view(temperature=[np.nan, np.nan, np.nan, 1.0]))[0].positions.tolist() == [1]
    assert md.evaluate(view(temperature=[np.nan] * 3)) == []


def test_gap_rule_learns_the_rate_and_spans_batches() -> None:
    g = GapRule(max_missing=5)
    t = np.arange(100) * 1e-3
    assert g.evaluate(view(timestamp=t)) == []
    assert g.sample_rate_hz == pytest.approx(1000.0)
    c = g.evaluate(view(timestamp=t[-1] + 0.02 + np.arange(3) * 1e-3))[0]
    assert c.positions.tolist() == [0] and c.values.tolist() == [19.0]
    assert g.evaluate(view(timestamp=t[-1] + 0.024 + np.arange(3) * 1e-3)) == []


def test_threshold_validation() -> None:
    with pytest.raises(ValueError, match="high, low"):
        ThresholdRule("t")
    with pytest.raises(ValueError, match="low"):
        ThresholdRule("t", low=5, high=1)
    with pytest.raises(ValueError, match="severity"):
        ThresholdRule("t", high=1, severity="loud")
    with pytest.raises(ValueError, match="max_change"):
        RateOfChangeRule("t", max_change=0)
    with pytest.raises(ValueError, match="max_consecutive"):
        MissingDataRule("t", max_consecutive=0)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        GapRule(sample_rate_hz=-1)


# alerts
def test_alert_processor_thresholds_with_cooldown_across_batches() -> None:
    mgr = AlertManager(cooldown_points=5)
    ap = AlertProcessor(mgr, [ThresholdRule("temperature", high=2000.0, severity="critical")])
    r1 = ap(msgs([2100.0, 2100.0, 1900.0, 2100.0], build_id="b<1>"))
    assert len(r1["alert_ids"]) == 1 and r1["n_candidates"] == 3 and r1["n_suppressed"] == 2
    a = r1["alerts"][0]
    assert a["severity"] == "critical" and a["rule"] == "threshold_high" and a["index"] == 0
    assert a["layer"] == 1 and a["build_id"] == "b<1>" and "b<1>" in a["message"]
    r2 = ap(msgs([2100.0, 2100.0], start=4))  # indices 4, 5: the episode goes on
    assert r2["alerts"] == [] and r2["n_suppressed"] == 2
    episode = mgr.get(a["id"])
    assert (episode.repeats, episode.last_index) == (4, 5)
    assert episode.last_time is not None and episode.last_time > episode.time
    r3 = ap(msgs([1900.0] * 5 + [2100.0], start=6))  # 5 quiet points: a new episode at 11
    assert [x["index"] for x in r3["alerts"]] == [11]
    assert ap.alert_manager is mgr and ap.manager is mgr


def test_alert_processor_raises_from_spc_in_either_order() -> None:
    def run(order: str) -> list[tuple[str, str, int]]:
        spc = SPCProcessor(signals=["temperature"], chart="imr", baseline_points=30, rules=[1])
        ap = AlertProcessor(AlertManager(cooldown_points=1), spc=spc)
        out = []
        for k, values in enumerate([noise(30), noise(10, 1) + [2400.0]]):
            batch = msgs(values, start=30 * k)
            if order == "spc_first":
                spc(batch)
            res = ap(batch)
            if order == "alert_first":
                spc(batch)  # memoised: the batch is not charted twice
            out += [(a["metric"], a["rule"], a["index"]) for a in res["alerts"]]
        assert spc.points_seen == 41
        return out

    first = run("spc_first")
    assert ("temperature", "spc:individual:rule_1", 40) in first
    assert run("alert_first") == first


def test_alert_processor_time_cooldown_uses_message_times() -> None:
    mgr = AlertManager(cooldown_points=None, cooldown_seconds=0.001)  # 20 samples at 20 kHz
    ap = AlertProcessor(mgr, [ThresholdRule("temperature", high=2000.0)])
    r = ap(msgs([2100.0] * 10 + [1900.0] * 25 + [2100.0] * 10 + [1900.0] * 10 + [2100.0] * 5))
    # 25 quiet samples (1.25 ms) end an episode, 10 (0.5 ms) do not
    assert [a["index"] for a in r["alerts"]] == [0, 35]
    assert mgr.get(r["alert_ids"][1]).repeats == 14


def test_alert_processor_never_crashes_on_garbage() -> None:
    procs = default_processors()
    for batch in (GARBAGE, [], [{"layer": None}] * 5, [None, 1, "x"]):  # type: ignore[list-item]
        for name, p in procs.items():
            out = p(batch)
            json.dumps(out, allow_nan=True)
            if name == "alert_processor":
                assert isinstance(out["alert_ids"], list)


def test_alert_processor_validation() -> None:
    with pytest.raises(TypeError, match="evaluate"):
        AlertProcessor(threshold_rules=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="spc"):
        AlertProcessor(spc=object())  # type: ignore[arg-type]


def test_default_processors_wiring_and_shared_state() -> None:
    procs = default_processors(baseline_points=200)
    assert list(procs) == ["quality_processor", "spc_processor", "alert_processor"]
    q, spc, ap = procs.values()
    assert ap.spc is spc and q.column_cache is spc.column_cache is ap.column_cache
    mgr = ap.alert_manager
    fixed = {"melt_pool_area": 0.015, "power": 280.0, "scan_speed": 1000.0, "layer": 0}
    fixed.update({"x": 1.0, "y": 1.0, "z": 0.04})
    base = [
        {
            "timestamp": T0 + timedelta(microseconds=50 * i),
            "temperature": t,
            "intensity": 1000.0 + i % 7,
        }
        | fixed
        for i, t in enumerate(noise(400, sd=35.0))
    ]
    for k in range(0, 400, 100):
        for p in procs.values():
            p(base[k : k + 100])
    later = T0 + timedelta(seconds=1)
    hot = [
        dict(m, temperature=2400.0, timestamp=later + timedelta(microseconds=50 * i))
        for i, m in enumerate(base[:10])
    ]
    out = {name: p(hot) for name, p in procs.items()}
    rules = {(a["metric"], a["rule"]) for a in out["alert_processor"]["alerts"]}
    assert ("temperature", "threshold_high") in rules
    assert ("timestamp", "time_gap") in rules  # a second without messages
    assert {a.id for a in mgr.active_alerts()} >= set(out["alert_processor"]["alert_ids"])
    assert out["spc_processor"]["signals"]["temperature"]["status"] == "monitoring"


def test_column_cache_converts_each_field_once() -> None:
    cache = ColumnCache()
    batch = msgs(noise(5))
    v1, v2 = MessageBatchView(batch, cache), MessageBatchView(batch, cache)
    assert v1.column("temperature") is v2.column("temperature")
    other = msgs(noise(5))
    assert MessageBatchView(other, cache).column("temperature") is not v1.column("temperature")


def test_array_path_matches_message_path() -> None:
    values = noise(300) + [2500.0] * 3 + noise(50, 2)
    batch = msgs(values)
    cols = {
        "temperature": np.array(values),
        "timestamp": np.array([m["timestamp"].timestamp() for m in batch]),
        "x": np.array([m["x"] for m in batch]),
        "layer": np.ones(len(values)),
    }

    def make() -> AlertProcessor:
        spc = SPCProcessor(signals=["temperature"], chart="imr", baseline_points=100, rules=[1, 5])
        return AlertProcessor(AlertManager(), [ThresholdRule("temperature", high=2200.0)], spc=spc)

    a, b = make(), make()
    ra, rb = [], []
    for k in range(0, len(values), 64):
        ra += a(batch[k : k + 64])["alerts"]
        rb += b.process_arrays({n: c[k : k + 64] for n, c in cols.items()})["alerts"]
    strip = lambda rs: [(r["metric"], r["rule"], r["index"], r["time"], r["layer"]) for r in rs]  # noqa: E731
    assert strip(ra) == strip(rb) and ra


def test_default_processors_convert_each_field_once_per_batch(monkeypatch) -> None:
    """Quality, SPC and alerts share one column cache: every field of a batch is turned
    into a column once, however many processors and rules read it."""
    import am_qadf.streaming.message_columns as mc

    calls: list[str] = []
    real = mc._field

    def counting(batch, name):
        calls.append(name)
        return real(batch, name)

    monkeypatch.setattr(mc, "_field", counting)
    procs = default_processors(baseline_points=50)
    batch = msgs(noise(200), melt_pool_area=0.02, intensity=1000.0, power=200.0)
    for p in procs.values():
        p(batch)
    assert calls and len(calls) == len(set(calls)), calls
    calls.clear()
    procs["alert_processor"](msgs(noise(10)))  # a new batch: converted again, once each
    assert calls and len(calls) == len(set(calls))


def test_message_point_info_matches_the_generic_one() -> None:
    from am_qadf.monitoring.batch_view import BatchView

    batch = [
        *msgs([1900.0], build_id="b1"),
        {"timestamp": "2026-01-01T00:00:01Z", "x": "a", "y": True, "z": None, "layer": 2.0},
        {"layer": float("nan"), "build_id": 7},
        "not a dict",
    ]
    v = MessageBatchView(batch)
    for pos in range(len(batch)):
        assert v.point_info(pos) == BatchView.point_info(v, pos)


def test_threshold_rule_skips_nan_when_testing_for_points_out() -> None:
    r = ThresholdRule("temperature", high=2200.0, low=1500.0)
    found = r.evaluate(view(temperature=[np.nan, 2300.0, np.nan, 1400.0]))
    assert [(c.rule, c.positions.tolist()) for c in found] == [
        ("threshold_high", [1]),
        ("threshold_low", [3]),
    ]
    assert r.evaluate(view(temperature=[np.nan, np.nan])) == []
    assert r.evaluate(view(temperature=[])) == []


def test_missing_data_run_ends_in_a_batch_without_gaps() -> None:
    md = MissingDataRule("temperature", max_consecutive=3)
    assert md.evaluate(view(temperature=[1.0, np.nan, np.nan])) == []
    assert md.evaluate(view(temperature=[1.0, 2.0])) == []  # the run ended here
    assert md.evaluate(view(temperature=[np.nan, np.nan])) == []
    assert md.evaluate(view(temperature=[np.nan]))[0].positions.tolist() == [0]


def test_int_columns_convert_like_float() -> None:
    from am_qadf.streaming.message_columns import column

    assert column([{"layer": 3}, {"layer": -7}], "layer").tolist() == [3.0, -7.0]
    big = [{"n": 2**62 + 1}, {"n": 2**70}, {"n": 2**1100}]  # beyond int64, beyond float
    assert column(big, "n").tolist()[:2] == [float(2**62 + 1), float(2**70)]
    assert math.isnan(column(big, "n")[2])


def test_spc_reports_the_first_violations_by_index_then_rule() -> None:
    values = noise(100) + [1960.0, 1962.0, 1958.0, 1961.0] * 5 + [2200.0, 2300.0] + noise(40, 1)

    def run(max_reported: int) -> list[tuple]:
        spc = SPCProcessor(
            signals=["temperature", "area"],
            chart="imr",
            baseline_points=100,
            max_reported=max_reported,
        )
        batch = msgs(values)
        for m, a in zip(batch, values, strict=True):
            m["area"] = a / 1000.0
        r = spc(batch)
        return [(v["index"], v["rule"], v["signal"], v["statistic"]) for v in r["violations"]]

    full = run(10_000)
    assert len(full) > 12 and len({(i, r) for i, r, *_ in full}) < len(full)  # ties too
    assert [(i, r) for i, r, *_ in full] == sorted((i, r) for i, r, *_ in full)
    assert run(7) == full[:7]
    assert run(0) == []
