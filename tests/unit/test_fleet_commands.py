"""Operator commands: parsing refuses anything malformed; a paused machine's messages
are still mapped for history; the worker leaves the caller's config alone."""

from __future__ import annotations

import pytest

from am_qadf.fleet.commands import Command, parse_command
from am_qadf.fleet.machine_pipeline import MachinePipeline
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.fleet.worker import TAKEOVER_KAFKA_CONFIG, FleetWorker
from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import StreamingConfig


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (["pause"], "JSON object"),
        ({"action": "pause"}, "'by'"),
        ({"action": "pause", "by": ""}, "'by'"),
        ({"action": "pause", "by": "x" * 500}, "'by'"),
        ({"action": "acknowledge", "by": "ada"}, "'alert_id'"),
        ({"action": "acknowledge", "by": "ada", "alert_id": 7}, "'alert_id'"),
        ({"action": "pause", "by": "ada", "alert_id": "a1"}, "takes no alert_id"),
        ({"action": "pause", "by": "ada", "$where": "1"}, "unknown command fields"),
        ({"action": "pause", "by": "ada", "issued_at": "now"}, "issued_at"),
        ({"action": None, "by": "ada"}, "unknown action"),
    ],
)
def test_malformed_commands_are_refused_with_the_reason(raw: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_command(raw)


def test_a_command_round_trips() -> None:
    cmd = Command("acknowledge", "ada", "a1", 5.0)
    assert parse_command(cmd.to_dict()) == cmd


def test_a_paused_machine_still_maps_its_messages_for_history() -> None:
    own = MachineProfile.from_dict(
        {
            "machine": {"id": "eos1"},
            "fields": {"time": "ts", "time_unit": "ms", "layer": "n"},
            "signals": {"temperature": {"field": "T_C", "offset": 273.15}},
        }
    )
    pipe = MachinePipeline("eos1", own, StreamingConfig.embedded(enable_mongodb_storage=False))
    pipe.paused = True
    values = [{"ts": 1_700_000_000_000, "x": 1.0, "y": 1.0, "n": 2, "T_C": 1000.0}]
    msgs = [{"topic": "t", "partition": 0, "offset": 0, "value": values[0]}]
    assert pipe.process(msgs, values) is None  # not analysed
    assert values[0]["temperature"] == pytest.approx(1273.15) and "T_C" not in values[0]
    assert values[0]["machine_id"] == "eos1" and pipe.held == 1
    assert pipe.monitor.grid.occupied_count == 0


def test_the_worker_leaves_the_callers_config_alone() -> None:
    cfg = StreamingConfig(kafka_bootstrap_servers=["127.0.0.1:1"], kafka_config={"a": 1})
    worker = FleetWorker(cfg, InProcessStateStore())
    assert cfg.kafka_config == {"a": 1}
    assert worker.config.kafka_config == {**TAKEOVER_KAFKA_CONFIG, "a": 1}


def test_an_alert_raised_again_after_a_takeover_is_published_once() -> None:
    from am_qadf.fleet.state_store import InProcessStateStore
    from am_qadf.simulation.build_simulator import BuildSimulator
    from am_qadf.simulation.defects import hot_spot_messages

    sim = BuildSimulator(3, n_points=300, n_defects=0, warmup_points=0)
    clean = [m for b in sim.iter_batches(300) for m in b]
    last = clean[-1]
    batch = clean + hot_spot_messages(last, last["timestamp"], last["build_id"], n_points=20)
    cfg = StreamingConfig.embedded(enable_mongodb_storage=False)
    store = InProcessStateStore()

    def owner() -> MachinePipeline:
        pipe = MachinePipeline("m1", MachineProfile.default(), cfg)
        pipe.resume_from(store)
        values = [dict(m) for m in batch]  # the same messages, delivered again
        msgs = [{"topic": "t", "partition": 0, "offset": i} for i in range(len(values))]
        pipe.process(msgs, values)
        pipe.publish(store, "w")
        return pipe

    owner()
    raised = [a for a in store.alerts("m1") if a["event"] == "raised"]
    assert raised and any(a["severity"] == "critical" for a in raised)
    second = owner()  # the partition moved; the new owner re-processes the batch
    assert [a for a in store.alerts("m1") if a["event"] == "raised"] == raised
    critical = next(a for a in raised if a["severity"] == "critical")
    second.handle(Command("acknowledge", "ada", critical["id"]))
    second.publish(store, "w")
    ack = store.alerts("m1")[-1]
    assert ack["event"] == "acknowledged" and ack["id"] == critical["id"]
    assert ack["acknowledged_by"] == "ada"
