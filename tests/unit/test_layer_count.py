"""The build's layer count from the messages (profile ``fields.layer_count``): parsed
and mapped by profile, taken per build (newest value wins) by a worker's pipeline,
published as ``layers``/``progress``, and shown as "layer N of M" on a worker
machine's fleet tile and kiosk."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.fleet_reader import rank
from am_qadf.fleet.fleet_simulation import fleet_publishers
from am_qadf.fleet.machine_pipeline import MachinePipeline, profile_for
from am_qadf.fleet.remote_machine import RemoteMachine
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.fleet.worker import FleetWorker
from am_qadf.machine_profile import MachineProfile, ProfileError
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import KafkaProducer, StreamingConfig
from am_qadf.streaming.kafka_consumer import KafkaConsumer
from am_qadf.streaming.profile_mapping import ProfileMapper
from dashboard.fleet_view import tile_html
from dashboard.kiosk import KioskStatus

CFG = StreamingConfig.embedded(enable_mongodb_storage=False)

EOS = {
    "machine": {"id": "eos1", "plate_mm": [250, 250, 300]},
    "fields": {
        "time": "ts",
        "time_unit": "ms",
        "layer": "n",
        "build": "job",
        "layer_count": "job_layers",
    },
    "signals": {"temperature": {"field": "T_C", "offset": 273.15}},
}


def _sim(seed: int, n: int, count: float | None = None) -> list[dict[str, Any]]:
    sim = BuildSimulator(seed, n_points=n, n_defects=0, warmup_points=0)
    msgs = [m for b in sim.iter_batches(500) for m in b]
    if count is not None:
        for m in msgs:
            m["layer_count"] = count
    return msgs


def _feed(pipe: MachinePipeline, values: list[dict[str, Any]]) -> None:
    records = [{"topic": "t", "partition": 0, "offset": i} for i in range(len(values))]
    pipe.process(records, values)


def _published(pipe: MachinePipeline) -> tuple[InProcessStateStore, Any]:
    store = InProcessStateStore()
    pipe.publish(store, "w1")
    return store, store.snapshot(pipe.machine_id)


# -- profile -----------------------------------------------------------------------------
def test_layer_count_field_is_optional_and_mapped_by_the_simulator_profile() -> None:
    assert MachineProfile.from_dict({"machine": {"id": "m"}}).fields.layer_count is None
    sim = MachineProfile.default()
    assert sim.fields.layer_count == "layer_count" and sim.is_identity
    p = MachineProfile.from_dict(EOS)
    assert p.fields.layer_count == "job_layers"
    assert "job_layers" in p.numeric_fields and "job_layers" not in p.expected_fields
    raw = p.to_raw({"layer_count": 80, "layer": 3})
    assert raw == {"job_layers": 80, "n": 3}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (3, "fields.layer_count: must be text, got integer 3"),
        ("", "fields.layer_count: must not be empty"),
        ("n", "fields.layer_count: field 'n' is already used by fields.layer"),
        ("T_C", "signals.temperature.field: field 'T_C' is already used by fields.layer_count"),
    ],
)
def test_bad_layer_count_field_names_key_and_reason(value: object, reason: str) -> None:
    d = {**EOS, "fields": {**EOS["fields"], "layer_count": value}}
    with pytest.raises(ProfileError) as err:
        MachineProfile.from_dict(d, source="m.toml")
    assert str(err.value) == f"m.toml: {reason}"


def test_a_signal_cannot_be_called_layer_count() -> None:
    with pytest.raises(ProfileError, match="signals.layer_count: 'layer_count' is reserved"):
        MachineProfile.from_dict({"machine": {"id": "m"}, "signals": {"layer_count": {}}})


def test_the_mapper_renames_the_machines_layer_count_field() -> None:
    p = MachineProfile.from_dict(EOS)
    batch = [{"ts": 1_700_000_000_000 + i, "x": 1.0, "y": 2.0, "z": 0.1, "n": 2, "job": "J",
              "job_layers": 90, "T_C": 1600.0} for i in range(3)]  # fmt: skip
    mapper = ProfileMapper(p)
    mapper.map_batch(batch)
    assert [m["layer_count"] for m in batch] == [90, 90, 90]
    assert "job_layers" not in batch[0] and mapper.statistics()["unnamed_fields"] == []


# -- pipeline ----------------------------------------------------------------------------
def test_pipeline_publishes_layers_and_progress_from_the_messages() -> None:
    pipe = MachinePipeline("m1", profile_for("m1"), CFG)
    msgs = _sim(1, 800, count=50)
    _feed(pipe, msgs)
    store, snap = _published(pipe)
    assert snap.build_id == "sim-1" and snap.layer is not None
    assert snap.layers == 50
    assert snap.progress == pytest.approx((snap.layer + 1) / 50)
    # the machine's own view (what /app?machine=ID reads) carries it too
    assert store.view("m1")["snapshot"]["build_plan"] == {"build_id": "sim-1", "layers": 50}


def test_the_newest_count_of_the_build_wins_and_a_new_build_starts_without() -> None:
    pipe = MachinePipeline("m1", profile_for("m1"), CFG)
    msgs = _sim(1, 600, count=50)
    for m in msgs[400:550]:
        m["layer_count"] = 64  # the job was re-planned
    for m in msgs[550:]:
        del m["layer_count"]  # ... and the newest messages carry none
    msgs[-1]["layer_count"] = "lots"  # not a number: not a count
    msgs[-2]["layer_count"] = 12.5  # not a whole number of layers
    _feed(pipe, msgs)
    assert _published(pipe)[1].layers == 64
    # the next build's messages carry no count: the last build's is not shown for it
    _feed(pipe, _sim(2, 300))
    snap = _published(pipe)[1]
    assert snap.build_id == "sim-2" and (snap.layers, snap.progress) == (None, None)


def test_without_the_profile_field_a_count_in_the_messages_is_ignored() -> None:
    base = profile_for("m1")
    plain = dataclasses.replace(base, fields=dataclasses.replace(base.fields, layer_count=None))
    pipe = MachinePipeline("m1", plain, CFG)
    _feed(pipe, _sim(1, 300, count=50))
    assert _published(pipe)[1].layers is None


def test_a_worker_maps_a_real_machines_count_by_its_profile(tmp_path: Any) -> None:
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://layers-{uuid.uuid4().hex}"],
        enable_mongodb_storage=False,
    )
    t0 = 1_700_000_000_000
    msgs = [{"ts": t0 + i, "x": 1.0, "y": 2.0, "z": 0.1, "n": 6, "job": "J7",
             "job_layers": 240, "T_C": 1600.0} for i in range(40)]  # fmt: skip
    prod = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    prod.produce_batch(msgs, key="eos1")
    prod.flush()
    store = InProcessStateStore()
    profiles = {"eos1": MachineProfile.from_dict(EOS)}
    worker = FleetWorker(cfg, store, profiles=profiles, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: (s := store.snapshot("eos1")) and s.messages == 40)
    finally:
        worker.stop()
    snap = store.snapshot("eos1")
    assert (snap.build_id, snap.layer, snap.layers) == ("J7", 6, 240)
    assert snap.progress == pytest.approx(7 / 240)


# -- screens -----------------------------------------------------------------------------
def test_a_worker_machines_tile_and_kiosk_say_layer_n_of_m() -> None:
    pipe = MachinePipeline("m1", profile_for("m1"), CFG)
    _feed(pipe, _sim(1, 800, count=50))
    store, snap = _published(pipe)
    [status] = rank([snap], now=snap.updated_at, stale_after=6)
    tile = tile_html(status, None, now=snap.updated_at, app_path="/app")
    assert f"Layer <b>{snap.layer}</b> of 50" in tile and "data-progress=" in tile
    kiosk = KioskStatus()
    remote = RemoteMachine(store, "m1", policy=AccessPolicy(open_access=True))
    kiosk.update(remote.monitor_snapshot(), {})
    assert f"{snap.layer:,}<small> of 50</small>" in kiosk.pane.object


def test_the_fleet_simulator_sends_each_builds_layer_count() -> None:
    boot = [f"memory://fleet-layers-{uuid.uuid4().hex}"]
    pubs = fleet_publishers(2, boot, "t", rate=50_000, builds=1, n_points=400)
    for p in pubs:
        p.run()
    consumer = KafkaConsumer(boot, ["t"], group_id="check")
    got: list[dict[str, Any]] = []
    while batch := consumer.poll(timeout_ms=200):
        got += batch
    consumer.close()
    assert len(got) == 800
    plans = {p.key: p.build_plan()["layers"] for p in pubs}
    assert all(r["value"]["layer_count"] == plans[r["key"]] for r in got)
