"""Build simulator (determinism, geometry, physics, ground truth) and file replay."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from am_qadf.simulation import (
    DEFAULT_PARTS,
    DEFECT_TYPES,
    MESSAGE_FIELDS,
    BuildSimulator,
    FileReplay,
    Pacer,
    Part,
    ProcessModel,
    ScanStrategy,
    write_recording,
)
from am_qadf.simulation.scan_path import HATCH, expand_points, layer_vectors


@pytest.fixture(scope="module")
def sim() -> BuildSimulator:
    return BuildSimulator(seed=11, n_points=300_000, n_defects=10, warmup_points=10_000)


@pytest.fixture(scope="module")
def cols(sim: BuildSimulator) -> dict[str, np.ndarray]:
    return sim.columns()


def test_same_seed_same_build(sim: BuildSimulator, cols: dict[str, np.ndarray]) -> None:
    again = BuildSimulator(seed=11, n_points=300_000, n_defects=10, warmup_points=10_000)
    assert [e.to_dict() for e in again.ground_truth] == [e.to_dict() for e in sim.ground_truth]
    other = again.columns()
    assert set(other) == set(cols)
    for k in cols:
        np.testing.assert_array_equal(other[k], cols[k])
    b1 = next(sim.iter_batches(batch_size=100))
    b2 = next(again.iter_batches(batch_size=100))
    assert b1 == b2
    diff = BuildSimulator(seed=12, n_points=300_000, n_defects=10, warmup_points=10_000)
    assert not np.array_equal(diff.columns(5_000)["temperature"], cols["temperature"][:5_000])


def test_chunking_does_not_change_the_data(
    sim: BuildSimulator, cols: dict[str, np.ndarray]
) -> None:
    chunks = list(sim.iter_arrays(chunk_size=777, n_points=150_000))
    joined = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    n = joined["index"].size
    for k in joined:
        np.testing.assert_array_equal(joined[k], cols[k][:n])


def test_columns_shape_types_and_time(sim: BuildSimulator, cols: dict[str, np.ndarray]) -> None:
    assert set(MESSAGE_FIELDS) - {"build_id"} <= set(cols) and "index" in cols
    dropped = sum(e.n_points for e in sim.ground_truth if e.mode == "dropped")
    assert cols["index"].size == sim.total_points - dropped
    assert np.all(np.diff(cols["index"]) > 0)
    assert cols["layer"].dtype == np.int64
    # point i is at start + i / rate
    np.testing.assert_allclose(
        cols["timestamp"] - sim.start_time.timestamp(),
        cols["index"] / sim.sensor_rate_hz,
        atol=1e-6,
    )
    assert sim.index_of(sim.time_of(123_457)) == 123_457


def test_messages_have_the_schema(sim: BuildSimulator) -> None:
    batches = sim.iter_batches(batch_size=1000)
    b = next(batches)
    assert len(b) == 1000
    m = b[0]
    assert tuple(m) == MESSAGE_FIELDS
    assert isinstance(m["timestamp"], datetime) and m["timestamp"].tzinfo is not None
    assert m["timestamp"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert (
        isinstance(m["layer"], int) and isinstance(m["build_id"], str) and m["build_id"] == "sim-11"
    )
    assert all(isinstance(m[k], float) for k in ("x", "y", "z", "power", "temperature", "value"))
    assert all(x["value"] == x["temperature"] for x in b)
    assert b[1]["timestamp"] - b[0]["timestamp"] == timedelta(microseconds=50)


def test_geometry_hatch_rotation_and_sample_spacing() -> None:
    st = ScanStrategy()
    for layer in (0, 1, 2, 5):
        lv = layer_vectors(DEFAULT_PARTS, layer, st)
        hatch = lv.direction[lv.kind == HATCH]
        angle = math.degrees(math.atan2(hatch[0, 1], hatch[0, 0])) % 180
        assert angle == pytest.approx((67 * layer) % 180, abs=1e-6)
        # meander: consecutive hatch lines of a part run in opposite directions
        assert np.dot(hatch[0], hatch[1]) == pytest.approx(-1.0)
    pts = expand_points(layer_vectors(DEFAULT_PARTS, 0, st))
    h = pts["kind"] == HATCH
    same_vec = np.flatnonzero(h[1:] & h[:-1] & (pts["vector"][1:] == pts["vector"][:-1]))
    step = np.hypot(np.diff(pts["x"])[same_vec], np.diff(pts["y"])[same_vec])
    np.testing.assert_allclose(step, 0.05)  # 1000 mm/s at 20 kHz
    # every point lies on the plate, inside a part's footprint
    assert (
        pts["x"].min() > 0 and pts["x"].max() < 250 and pts["y"].min() > 0 and pts["y"].max() < 250
    )


def test_overhang_part_grows_and_runs_hot() -> None:
    part = DEFAULT_PARTS[3]
    assert part.footprint(0.04)[1] < part.footprint(0.3)[1]
    sim = BuildSimulator(seed=0, n_points=900_000, n_defects=0)
    zones = sim.hot_zones
    assert zones and not any(z.injected for z in zones)
    assert zones[0].layer == 6 and zones[0].magnitude == pytest.approx(
        ProcessModel().overhang_boost
    )
    assert all(a.magnitude > b.magnitude for a, b in zip(zones, zones[1:], strict=False))
    # the overhang strip is hotter than the rest of the part in the first overhang layer
    z = zones[0]
    c = {k: v[z.start_index - 1000 : z.end_index] for k, v in sim.columns(z.end_index).items()}
    over = c["x"] > part.overhang_edge
    assert np.mean(c["temperature"][over]) - np.mean(c["temperature"][~over]) > 40


def test_physics_energy_density_and_transients() -> None:
    m = ProcessModel()
    rng = np.random.default_rng(0)
    p = np.array([280.0, 280.0 * 0.7, 280.0, 280.0])
    v = np.array([1000.0, 1000.0, 1000.0, 1400.0])
    j = np.array([1000.0, 1000.0, 0.0, 1000.0])
    out = m.respond(p, v, j, np.ones(4), rng, noise=False)
    t = out["temperature"]
    assert t[0] == pytest.approx(m.temperature_nominal)
    assert t[1] < t[0] and t[3] < t[0]  # less energy per mm: cooler
    assert t[2] == pytest.approx(t[0] * (1 + m.transient_amplitude))  # start-of-vector overshoot
    assert out["melt_pool_area"][1] < out["melt_pool_area"][0]
    hot = m.respond(p[:1], v[:1], j[:1], np.array([1.2]), rng, noise=False)
    assert hot["temperature"][0] == pytest.approx(1.2 * m.temperature_nominal)


def test_ground_truth_is_consistent(sim: BuildSimulator, cols: dict[str, np.ndarray]) -> None:
    gt = sim.ground_truth
    assert len(gt) == 10 and {e.kind for e in gt} == set(DEFECT_TYPES)
    assert all(e.start_index >= 10_000 and e.end_index <= sim.total_points for e in gt)
    assert all(a.end_index <= b.start_index for a, b in zip(gt, gt[1:], strict=False))
    pos = {int(i): k for k, i in enumerate(cols["index"])}
    base_t = np.nanmedian(cols["temperature"][:10_000])
    for e in gt:
        assert e.start_time == sim.time_of(e.start_index) and e.end_time == sim.time_of(e.end_index)
        x, y, z, layer = sim.position_of(e.start_index)
        assert (e.x, e.y, e.z, e.layer) == (x, y, z, layer)
        sl = slice(e.start_index, e.end_index)
        if e.kind == "sensor_dropout" and e.mode == "dropped":
            assert not any(i in pos for i in range(e.start_index, e.end_index))
            continue
        k = pos[e.start_index]
        assert (cols["x"][k], cols["y"][k], cols["layer"][k]) == (x, y, layer)
        seg = {f: cols[f][pos[sl.start] : pos[sl.start] + e.n_points] for f in cols}
        if e.kind == "overheating":
            assert np.median(seg["temperature"]) > base_t * 1.1
        elif e.kind == "lack_of_fusion":
            assert np.median(seg["temperature"]) < base_t * 0.95
            field = "power" if e.mode == "power_drop" else "scan_speed"
            assert field in e.signals
        elif e.kind == "spatter":
            assert seg["intensity"].max() > 2.4 * np.nanmedian(cols["intensity"][:10_000])
        elif e.kind == "sensor_drift":
            assert (
                np.median(seg["temperature"][-200:]) - base_t
                > 0.8 * e.magnitude * e.n_points / 1000
            )
        elif e.kind == "sensor_dropout":
            assert np.isnan(seg["temperature"]).all() and np.isnan(seg["value"]).all()
            assert not np.isnan(seg["power"]).any()


def test_dropout_modes_in_messages() -> None:
    seen = set()
    for seed in range(30):
        s = BuildSimulator(
            seed=seed,
            n_points=60_000,
            n_defects=5,
            warmup_points=2_000,
            defect_types=("sensor_dropout",),
            defect_gap=500,
        )
        for e in s.ground_truth:
            if e.mode in ("none", "missing") and e.mode not in seen:
                seen.add(e.mode)
                msgs = [m for b in s.iter_batches(batch_size=5000) for m in b]
                idx = s.columns()["index"]
                k = int(np.searchsorted(idx, e.start_index))
                m = msgs[k]
                if e.mode == "none":
                    assert m["temperature"] is None and m["value"] is None
                else:
                    assert "temperature" not in m and "melt_pool_area" not in m
                assert isinstance(m["power"], float)
        if seen == {"none", "missing"}:
            break
    assert seen == {"none", "missing"}


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"seed": -1}, ValueError, "seed"),
        ({"n_points": 0}, ValueError, "n_points"),
        ({"n_defects": -2}, ValueError, "n_defects"),
        ({"n_points": 30_000, "n_defects": 50}, ValueError, "n_defects"),
        ({"defect_types": ("meteor",)}, ValueError, "defect kinds"),
        ({"start_time": "2024-01-01"}, TypeError, "start_time"),
        ({"parts": ()}, ValueError, "parts"),
    ],
)
def test_simulator_argument_errors(kwargs, exc, word) -> None:
    with pytest.raises(exc, match=word):
        BuildSimulator(**kwargs)


def test_part_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Part("p", "sphere", (0, 0), (1, 1), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overhang"):
        Part("p", "cylinder", (0, 0), (1, 1), 1, overhang=2)
    with pytest.raises(ValueError, match="hatch_spacing"):
        ScanStrategy(hatch_spacing=0)


def test_whole_build_and_real_time_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (Part("tiny", "box", (10.0, 10.0), (1.0, 1.0), 0.08),)
    s = BuildSimulator(seed=0, n_points=None, n_defects=0, parts=parts, warmup_points=0)
    assert s.n_layers == 2 and s.total_points == sum(c["x"].size for c in s.iter_arrays())
    sleeps: list[float] = []
    monkeypatch.setattr("am_qadf.simulation.pacing.time.sleep", sleeps.append)
    monkeypatch.setattr("am_qadf.simulation.pacing.time.monotonic", lambda: 0.0)
    n = sum(len(b) for b in s.iter_batches(batch_size=100, real_time=True, rate=1000.0))
    assert n == s.total_points
    # the clock is frozen at 0 = stream time 0; a batch goes out when its last point
    # (index 99, 199, 299 at 1000 points/s) is due
    assert sleeps[:3] == pytest.approx([0.099, 0.199, 0.299])


def test_pacer() -> None:
    slept: list[float] = []
    now = [100.0]
    p = Pacer(speed=10.0, clock=lambda: now[0], sleep=slept.append)
    p.wait(0.0)
    now[0] += 0.05
    p.wait(1.0)  # due at 100.1
    assert slept == pytest.approx([0.05])
    for fast in (0, math.inf):
        q = Pacer(speed=fast, sleep=slept.append)
        q.wait(0.0)
        q.wait(100.0)
    assert len(slept) == 1
    with pytest.raises(ValueError, match="speed"):
        Pacer(-1)
    with pytest.raises(TypeError, match="speed"):
        Pacer("fast")  # type: ignore[arg-type]


# replay
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_recording_round_trip(tmp_path: Path, suffix: str) -> None:
    kinds = ("sensor_dropout", "spatter", "lack_of_fusion")
    s = BuildSimulator(
        seed=5,
        n_points=12_000,
        n_defects=3,
        defect_types=kinds,
        warmup_points=1_000,
        defect_gap=500,
    )
    path = tmp_path / f"build{suffix}"
    rows = write_recording(path, s)
    expected = [m for b in s.iter_batches(batch_size=4096) for m in b]
    assert rows == len(expected)
    got = [m for b in FileReplay(path, speed=0).iter_batches(batch_size=1000) for m in b]
    assert len(got) == len(expected)
    for a, e in zip(got, expected, strict=True):
        assert a["timestamp"] == e["timestamp"] and a["timestamp"].tzinfo is not None
        assert (
            a["layer"] == e["layer"]
            and isinstance(a["layer"], int)
            and a["build_id"] == e["build_id"]
        )
        for k in (
            "x",
            "y",
            "z",
            "power",
            "scan_speed",
            "temperature",
            "melt_pool_area",
            "intensity",
        ):
            ev = e.get(k)
            if ev is None or ev != ev:  # blanked by a dropout: NaN in the file
                assert math.isnan(a[k])
            else:
                assert a[k] == ev


def test_replay_batches_and_pacing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = BuildSimulator(seed=1, n_points=2_500, n_defects=0)
    path = tmp_path / "b.pq"
    write_recording(path, s)
    assert [len(b) for b in FileReplay(path, speed=float("inf")).iter_batches(1000)] == [
        1000,
        1000,
        500,
    ]
    sleeps: list[float] = []
    monkeypatch.setattr("am_qadf.simulation.pacing.time.sleep", sleeps.append)
    monkeypatch.setattr("am_qadf.simulation.pacing.time.monotonic", lambda: 0.0)
    list(FileReplay(path, speed=2.0).iter_batches(1000))
    # last message of each batch: points 999, 1999, 2499 at 20 kHz, relative to point 999, / 2
    assert sleeps == pytest.approx([1000 / 20_000 / 2, 1500 / 20_000 / 2])


def test_replay_of_a_hand_written_csv(tmp_path: Path) -> None:
    path = tmp_path / "manual.csv"
    path.write_text(
        "timestamp,layer,temperature,note\n"
        "2026-01-01T00:00:00Z,1,1900.5,ok\n"
        "2026-01-01T00:00:01+00:00,1,,<b>x</b>\n"
        "2026-01-01 00:00:02,2,1901.0,\n"
    )
    (b,) = FileReplay(path, speed=0).iter_batches(10)
    assert [m["timestamp"].second for m in b] == [0, 1, 2]
    assert all(m["timestamp"].tzinfo is not None for m in b)
    assert math.isnan(b[1]["temperature"]) and b[1]["note"] == "<b>x</b>"
    assert "note" not in b[2]


def test_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        FileReplay(tmp_path / "missing.csv")
    bad = tmp_path / "build.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="suffix"):
        FileReplay(bad)
    ok = tmp_path / "b.csv"
    ok.write_text("timestamp,value\n")
    with pytest.raises(ValueError, match="speed"):
        FileReplay(ok, speed=-2)
    with pytest.raises(ValueError, match="batch_size"):
        next(FileReplay(ok, speed=0).iter_batches(0))
    assert list(FileReplay(ok, speed=0).iter_batches(5)) == []


def test_start_at_moves_the_build_and_its_ground_truth() -> None:
    s = BuildSimulator(seed=3, n_points=60_000, n_defects=4)
    before = s.ground_truth
    later = s.start_time + timedelta(hours=1)
    s.start_at(later)
    assert s.time_of(0) == later
    first = next(s.iter_batches(batch_size=10))
    assert first[0]["timestamp"] == later
    after = s.ground_truth
    assert [e.start_index for e in after] == [e.start_index for e in before]
    hour = timedelta(hours=1)
    for a, b in zip(after, before, strict=True):
        assert a.start_time - b.start_time == hour and a.end_time - b.end_time == hour
    with pytest.raises(TypeError, match="start_time"):
        s.start_at("2026-01-01")  # type: ignore[arg-type]
