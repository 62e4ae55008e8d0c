"""Ingestion by machine profile: canonical names, units, time, z, fit figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import StreamingClient, StreamingConfig
from am_qadf.streaming.message_columns import ColumnCache
from am_qadf.streaming.profile_mapping import ProfileMapper

EOS = Path(__file__).resolve().parents[2] / "assets" / "profiles" / "eos-m290-example.toml"


def _eos_messages(n: int, t0_ms: int = 1_760_000_000_000) -> list[dict]:
    return [
        {
            "ts": t0_ms + i,
            "pos_x": 10.0 + i * 0.01,
            "pos_y": 20.0,
            "layer_no": 5,
            "job": "job-9",
            "mp_temp_C": 1626.85,
            "photodiode_mV": 2000.0,
            "laser_W": 280.0,
            "chamber_o2_ppm": 120.0,
        }
        for i in range(n)
    ]


def test_eos_messages_map_onto_canonical_names_and_units() -> None:
    p = MachineProfile.load(EOS)
    batch = _eos_messages(3)
    cache = ColumnCache()
    ProfileMapper(p).map_batch(batch, cache)
    m = batch[1]
    assert set(m) == {
        "timestamp",
        "x",
        "y",
        "z",
        "layer",
        "build_id",
        "temperature",
        "photodiode",
        "laser_power",
        "chamber_o2_ppm",
    }
    assert m["timestamp"] == datetime.fromtimestamp(1_760_000_000.001, UTC)
    assert m["temperature"] == pytest.approx(1900.0)
    assert m["photodiode"] == pytest.approx(2.0)
    assert m["z"] == pytest.approx(0.2) and m["layer"] == 5 and m["build_id"] == "job-9"
    assert m["chamber_o2_ppm"] == 120.0  # not named by the profile: kept as it is
    # the cache knows the new columns (processors convert nothing again) and forgets old ones
    assert cache.columns(batch, ["temperature"])["temperature"] == pytest.approx([1900.0] * 3)
    assert "mp_temp_C" not in cache.field_names(batch)
    assert "temperature" in cache.field_names(batch)


@pytest.mark.parametrize(
    ("unit", "raw"),
    [
        ("s", 1.5),
        ("ms", 1500),
        ("us", 1_500_000),
        ("ns", 1_500_000_000),
        ("iso", "1970-01-01T00:00:01.5Z"),
    ],
)
def test_every_time_unit(unit: str, raw: object) -> None:
    p = MachineProfile.from_dict(
        {"machine": {"id": "m"}, "fields": {"time": "t", "time_unit": unit}}
    )
    batch = [{"t": raw, "x": 1.0, "y": 1.0, "z": 1.0, "layer": 1}]
    ProfileMapper(p).map_batch(batch)
    assert batch[0]["timestamp"] == datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)
    assert "t" not in batch[0]


def test_missing_and_null_values_stay_missing() -> None:
    p = MachineProfile.load(EOS)
    batch = _eos_messages(3)
    del batch[0]["mp_temp_C"]
    batch[1]["mp_temp_C"] = None
    del batch[2]["ts"]
    batch[2]["pos_z"] = 1.0
    ProfileMapper(p).map_batch(batch)
    assert "temperature" not in batch[0]
    assert batch[1]["temperature"] is None
    assert batch[2]["temperature"] == pytest.approx(1900.0)
    assert "timestamp" not in batch[2] and "timestamp" in batch[1]


def test_z_from_layer_only_where_a_message_has_none() -> None:
    p = MachineProfile.from_dict(
        {"machine": {"id": "m"}, "fields": {"z": "Z", "layer": "L", "layer_thickness_mm": 0.05}}
    )
    batch = [{"x": 0.0, "y": 0.0, "Z": 7.0, "L": 2}, {"x": 0.0, "y": 0.0, "L": 3}]
    ProfileMapper(p).map_batch(batch)
    assert [m["z"] for m in batch] == [7.0, pytest.approx(0.15)]


def test_fit_figures_name_missing_fields_and_points_outside_the_plate() -> None:
    p = MachineProfile.load(EOS)
    mapper = ProfileMapper(p, window=100)
    sim_shaped = [{"timestamp": "2026-01-01T00:00:00Z", "x": 1.0, "y": 1.0, "temperature": 1900.0}]
    for _ in range(150):
        mapper.map_batch(sim_shaped * 1)
    st = mapper.statistics()
    assert st["missing"]["mp_temp_C"] == 1.0
    assert "field mp_temp_C missing in 100 % of the last 100 messages" in st["problems"]
    assert "temperature" in st["unnamed_fields"]  # stored, not mapped
    batch = _eos_messages(4)
    batch[0]["pos_x"] = 900.0
    mapper.map_batch(batch)
    st = mapper.statistics()
    assert st["outside_plate"] == 1
    assert any("outside the plate (250 × 250 × 325 mm)" in line for line in st["problems"])
    assert batch[0]["x"] == 900.0  # counted, not dropped


def test_simulator_profile_maps_nothing() -> None:
    mapper = ProfileMapper(MachineProfile.default())
    assert mapper.identity
    batch = [
        {
            "timestamp": "2026-01-01T00:00:00Z",
            "x": 1.0,
            "y": 2.0,
            "z": 0.1,
            "layer": 1,
            "temperature": 1900.0,
        }
    ]
    before = [dict(m) for m in batch]
    mapper.map_batch(batch)
    assert batch == before
    assert mapper.statistics()["missing"]["temperature"] == 0.0
    assert mapper.statistics()["missing"]["intensity"] == 1.0


def test_streaming_client_with_a_profile_runs_processors_on_canonical_signals() -> None:
    p = MachineProfile.load(EOS)
    client = StreamingClient(StreamingConfig.embedded(), profile=p)
    from am_qadf.voxelization.voxel_grid import VoxelGrid

    client.with_default_processors(VoxelGrid((0, 0, 0), (250, 250, 325), 1.0))
    batch = _eos_messages(50)
    batch[10]["mp_temp_C"] = 2600.0  # 2873 K: above the profile's high limit (2700 K)
    r = client.process_stream_batch(batch)
    rules = {
        (a["metric"], a["rule"]) for a in client.processors["alert_processor"].last_result["alerts"]
    }
    assert ("temperature", "threshold_high") in rules
    assert r.quality_metrics["temperature_mean"] == pytest.approx(1900.0 + 973.15 / 50, rel=1e-6)
    assert set(r.spc_results["signals"]) == {"temperature", "photodiode"}
    assert r.spc_results["signals"]["photodiode"]["chart"] == "imr"
    assert "temperature" in client.buffers and "mp_temp_C" not in client.buffers
    assert "chamber_o2_ppm" in client.buffers  # unnamed numeric fields still plottable
    assert (
        client.validator.check({"mp_temp_C": "hot"})
        == "field 'mp_temp_C' must be a number, got str"
    )
    assert np.isfinite(client.profile_statistics()["missing"]["ts"])


def test_epoch_numbers_in_a_field_called_timestamp() -> None:
    p = MachineProfile.from_dict(
        {"machine": {"id": "m"}, "fields": {"time": "timestamp", "time_unit": "ms"}}
    )
    client = StreamingClient(StreamingConfig.embedded(), profile=p)
    values = [{"timestamp": 1_700_000_000_123, "x": 1.0, "y": 1.0, "z": 0.1, "layer": 1}]
    assert client.validator.check_batch(values) == [None]  # not read as seconds
    client.process_stream_batch(values)
    assert values[0]["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
    assert (
        client.validator.check({"timestamp": "soon"})
        == "field 'timestamp' must be a number, got str"
    )
