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
