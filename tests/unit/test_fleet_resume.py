"""A machine's charts move with it: a new owner restored from the last owner's
checkpoint continues exactly as one pipeline that never moved would have."""

from __future__ import annotations

from typing import Any

import pytest

from am_qadf.fleet.machine_pipeline import MachinePipeline
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.machine_profile import MachineProfile
from am_qadf.monitoring.alerts import Alert
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import StreamingConfig

CFG = StreamingConfig.embedded(enable_mongodb_storage=False)
BATCH = 500


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    sim = BuildSimulator(11, n_points=30_000, n_defects=3, warmup_points=6_000)
    return [m for b in sim.iter_batches(2000) for m in b]


def _pipeline(raised: list[Alert]) -> MachinePipeline:
    pipe = MachinePipeline("m1", MachineProfile.default(), CFG)
    pipe.monitor.alerts.add_listener(raised.append)
    return pipe


def _feed(
    pipe: MachinePipeline, stream: list[dict[str, Any]], start: int, stop: int, shift: int = 0
) -> list:
    """Process messages ``start``..``stop`` (at offsets ``shift`` further) in batches
    as a worker does; each batch's SPC results (every chart's values and limits)."""
    out = []
    for a in range(start, stop, BATCH):
        part = stream[a : min(a + BATCH, stop)]
        msgs = [{"topic": "t", "partition": 0, "offset": a + shift + i} for i in range(len(part))]
        result = pipe.process(msgs, [dict(m) for m in part])
        if result is None:
            out.append(None)
            continue
        side = {k: v for k, v in result.metadata["processors"].items() if k.startswith("spc_")}
        out.append((result.spc_results, side))
    return out


def _charts(pipe: MachinePipeline) -> dict[str, Any]:
    procs = pipe.client.processors
    return {n: p.export_state() for n, p in procs.items() if n.startswith("spc")}


def _what(alerts: list[Alert]) -> list[tuple]:
    return [(a.rule, a.metric, a.time, a.value, a.severity, a.index) for a in alerts]


def test_a_new_owner_restored_from_the_checkpoint_continues_the_charts_exactly(
    stream: list[dict[str, Any]],
) -> None:
    n = len(stream)
    straight_alerts: list[Alert] = []
    straight = _pipeline(straight_alerts)
    before = _feed(straight, stream, 0, 12_000)
    after = _feed(straight, stream, 12_000, n)

    store = InProcessStateStore()
    a = _pipeline([])
    assert _feed(a, stream, 0, 12_000) == before
    assert a.checkpoint(store)  # then its offsets may be committed (say up to 11 000)
    _feed(a, stream, 12_000, 13_500)  # processed after the checkpoint, then killed
    b_alerts: list[Alert] = []
    b = _pipeline(b_alerts)
    b.resume_from(store)
    assert b.restored
    # re-read from the commit: what the checkpoint holds is stored, not charted again
    assert _feed(b, stream, 11_000, 12_000) == [None, None]
    assert _feed(b, stream, 12_000, n) == after
    assert _charts(b) == _charts(straight)
    assert straight_alerts and _what(b_alerts) == _what(straight_alerts[-len(b_alerts) :])
    assert len(b_alerts) == sum(a.index >= 12_000 for a in straight_alerts)
    assert b_alerts and b.messages == n - 11_000 and b.offsets == {("t", 0): n}


def test_a_machine_sharing_its_partition_continues_after_the_others_messages(
    stream: list[dict[str, Any]],
) -> None:
    """Other machines' messages between the checkpoint and the commit are no gap."""
    straight = _pipeline([])
    _feed(straight, stream, 0, 6_000)
    after = _feed(straight, stream, 6_000, 9_000)
    store = InProcessStateStore()
    a = _pipeline([])
    _feed(a, stream, 0, 6_000)
    a.checkpoint(store)
    b = _pipeline([])
    b.resume_from(store)  # reads from offset 10 000: 4 000 messages of others came first
    assert b.restored and _feed(b, stream, 6_000, 9_000, shift=4_000) == after
    assert _charts(b) == _charts(straight)


def test_a_checkpoint_of_other_charts_is_refused_by_name(stream: list[dict[str, Any]]) -> None:
    store = InProcessStateStore()
    a = _pipeline([])
    _feed(a, stream, 0, 1_000)
    a.checkpoint(store)
    state = store.resume_state("m1")
    assert state is not None
    del state["monitor"]["processors"]["spc_processor"]["charts"][0]["state"]["_z"]
    store.put_resume_state("m1", state)
    with pytest.raises(ValueError, match="_z"):
        _pipeline([]).resume_from(store)
