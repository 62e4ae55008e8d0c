"""Fleet workers on the real servers: ``am-qadf worker`` subprocesses sharing a
6-partition topic in one consumer group, derived state in Redis, history in MongoDB.

* two workers split the machines; every message is stored once; every machine has
  state in Redis; an operator command reaches the worker that owns the machine;
* one worker is SIGKILLed mid-stream; the other takes its partitions over and
  nothing is lost or doubled in history;
* one worker is SIGKILLed inside an alert episode whose first point was committed:
  the survivor continues the episode (no alert raised twice), and keeps its own
  machines without reading them again (cooperative-sticky assignment).

Topic, group, Redis prefix and Mongo database are unique per test; traffic is
bounded (tens of thousands of messages) and on loopback; waits are on conditions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.commands import send_action
from am_qadf.fleet.state_store import RedisStateStore
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.simulation.defects import hot_spot_messages
from am_qadf.streaming import KafkaProducer
from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINES = [f"m{i:02d}" for i in range(1, 7)]
PARTITIONS = 6
HOT = ("threshold_high", "temperature")


def _messages(seed: int, n: int) -> list[dict[str, Any]]:
    sim = BuildSimulator(seed, n_points=n, n_defects=0, warmup_points=0)
    return [m for b in sim.iter_batches(1000) for m in b]


class Fleet:
    """Topic, group, state prefix and history database of one test, and its workers."""

    def __init__(self, kafka: str, redis_url: str, mongo_uri: str, tmp: Path) -> None:
        self.kafka, self.redis_url, self.tmp = kafka, redis_url, tmp
        tag = uuid.uuid4().hex[:12]
        self.topic, self.group = f"it-fleet-{tag}", f"it-fleet-{tag}"
        self.prefix = f"it-fleet-{tag}"
        base = mongo_uri.rsplit("/", 1)[0]
        self.db_name = f"it_fleet_{tag}"
        self.mongo_uri = f"{base}/{self.db_name}"
        self.state = RedisStateStore(redis_url, prefix=self.prefix)
        self.workers: dict[str, subprocess.Popen] = {}
        self.produced: dict[str, int] = dict.fromkeys(MACHINES, 0)
        from confluent_kafka.admin import AdminClient, NewTopic

        self.admin = AdminClient({"bootstrap.servers": kafka})
        self.admin.create_topics([NewTopic(self.topic, PARTITIONS, 1)])[self.topic].result(30)
        import pymongo

        self.mongo = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        self.coll = self.mongo[self.db_name]["stream_data"]

    def spawn(self, worker_id: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "AMQADF_MONGO_URI": self.mongo_uri,
            "AMQADF_REDIS_URL": self.redis_url,
            "AMQADF_STATE_PREFIX": self.prefix,
        }
        log = open(self.tmp / f"worker-{worker_id}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "am_qadf.cli", "worker", "--bootstrap", self.kafka,
             "--topic", self.topic, "--group", self.group, "--state", self.redis_url,
             "--id", worker_id, "--interval", "1"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workers[worker_id] = proc
        return proc

    def members_with_partitions(self) -> int:
        """How many group members hold at least one partition of the topic."""
        try:
            desc = self.admin.describe_consumer_groups([self.group])[self.group].result(10)
        except Exception:
            return 0
        return sum(
            1
            for m in desc.members
            if m.assignment and any(tp.topic == self.topic for tp in m.assignment.topic_partitions)
        )

    def produce(self, per_machine: int, seed: int) -> None:
        self.produce_each({m: _messages(seed + i, per_machine) for i, m in enumerate(MACHINES)})

    def produce_each(self, batches: dict[str, list[dict[str, Any]]]) -> None:
        prod = KafkaProducer([self.kafka], self.topic)
        for machine, msgs in batches.items():
            self.produced[machine] += prod.produce_batch(msgs, key=machine)
        prod.flush()
        prod.close()

    def all_committed(self) -> bool:
        """True when the group's committed offsets reach the end of every partition."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.kafka, "group.id": self.group})
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
            ends = {p: c.get_watermark_offsets(tp, timeout=10)[1] for p, tp in enumerate(tps)}
        finally:
            c.close()
        return all(ends[p] == 0 or committed[p] == ends[p] for p in ends)

    def stored(self) -> int:
        return self.coll.count_documents({})

    def close(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.state.clear()
        self.state.close()
        self.mongo.drop_database(self.db_name)
        self.mongo.close()
        self.admin.delete_topics([self.topic, self.topic + ".dlq"])

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("worker-*.log"))
        )


def _assert_history_exact(fleet: Fleet) -> None:
    """Every produced message stored exactly once, under its machine."""
    total = sum(fleet.produced.values())
    assert fleet.stored() == total, fleet.logs()
    for machine, n in fleet.produced.items():
        assert fleet.coll.count_documents({"machine_id": machine}) == n


def test_two_workers_share_machines_and_operator_action_reaches_owner(fleet: Fleet) -> None:
    fleet.spawn("a")
    fleet.spawn("b")
    assert wait_for(lambda: fleet.members_with_partitions() == 2, timeout=120), fleet.logs()
    fleet.produce(2000, seed=1)
    total = sum(fleet.produced.values())

    def machines_done() -> bool:
        snaps = fleet.state.snapshots()
        return set(snaps) == set(MACHINES) and all(
            snaps[m].messages == fleet.produced[m] for m in MACHINES
        )

    assert wait_for(machines_done, timeout=180), fleet.logs()
    assert wait_for(lambda: fleet.stored() == total, timeout=180), fleet.logs()
    _assert_history_exact(fleet)
    snaps = fleet.state.snapshots()
    assert {s.worker for s in snaps.values()} == {"a", "b"}  # both did work
    assert all(s.build_id and s.layer is not None for s in snaps.values())
    assert all("temperature" in fleet.state.windows(m) for m in MACHINES)

    target = MACHINES[0]
    owner = snaps[target].worker
    cid = send_action(fleet.state, AccessPolicy(operators={"ada"}), "ada", target, "pause")

    def handled() -> bool:
        s = fleet.state.snapshot(target)
        return bool(s.last_command and s.last_command["id"] == cid)

    assert wait_for(handled, timeout=60), fleet.logs()
    s = fleet.state.snapshot(target)
    assert s.state == "paused" and s.worker == owner and s.last_command["ok"]
    assert s.last_command["by"] == "ada"
    others = [fleet.state.snapshot(m) for m in MACHINES[1:]]
    assert all(o.state == "running" for o in others)


def test_killed_worker_partitions_are_taken_over_nothing_lost_or_doubled(fleet: Fleet) -> None:
    fleet.spawn("a")
    b = fleet.spawn("b")
    assert wait_for(lambda: fleet.members_with_partitions() == 2, timeout=120), fleet.logs()
    fleet.produce(1500, seed=11)

    def b_is_working() -> bool:
        return any(s.worker == "b" and s.messages for s in fleet.state.snapshots().values())

    assert wait_for(b_is_working, timeout=120, step=0.02), fleet.logs()
    b.send_signal(signal.SIGKILL)  # mid-stream: b's newest offsets are not committed
    b.wait(timeout=30)
    fleet.produce(1500, seed=21)
    total = sum(fleet.produced.values())
    assert wait_for(lambda: fleet.stored() >= total, timeout=240), fleet.logs()

    def all_on_a() -> bool:
        snaps = fleet.state.snapshots()
        return set(snaps) == set(MACHINES) and all(s.worker == "a" for s in snaps.values())

    # the machines b owned moved to a with their partitions
    assert wait_for(all_on_a, timeout=120), fleet.logs()
    _assert_history_exact(fleet)


def _hot_spot(seed: int, clean: int, hot: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``clean`` ordinary points, then ``hot`` overheating ones (one long threshold
    episode), split in the middle of the hot stretch: (before, after)."""
    msgs = _messages(seed, clean)
    last = msgs[-1]
    msgs += hot_spot_messages(last, last["timestamp"], last["build_id"], n_points=hot)
    cut = clean + hot // 2
    return msgs[:cut], msgs[cut:]


def test_an_alert_episode_survives_a_sigkill_raised_once(fleet: Fleet) -> None:
    """... and the survivor's charts continue the victim's (restored from its
    checkpoint: the baseline learned from the first 5000 points, EWMA, counts), not
    learned again from the messages it reads."""
    fleet.spawn("a")
    fleet.spawn("b")
    assert wait_for(lambda: fleet.members_with_partitions() == 2, timeout=120), fleet.logs()
    halves = {m: _hot_spot(31 + i, 5500, 1000) for i, m in enumerate(MACHINES)}
    fleet.produce_each({m: h[0] for m, h in halves.items()})
    total = sum(fleet.produced.values())

    def first_half_done() -> bool:
        snaps = fleet.state.snapshots()
        return set(snaps) == set(MACHINES) and all(
            snaps[m].messages == fleet.produced[m] for m in MACHINES
        )

    # every machine inside its episode, its alert published and its offsets committed
    assert wait_for(first_half_done, timeout=180), fleet.logs()
    assert wait_for(lambda: fleet.stored() == total, timeout=180), fleet.logs()
    assert wait_for(fleet.all_committed, timeout=120), fleet.logs()
    owners = {m: s.worker for m, s in fleet.state.snapshots().items()}
    victim = max("ab", key=lambda w: sum(o == w for o in owners.values()))
    survivor = "a" if victim == "b" else "b"

    def hot_alerts() -> list[list[dict[str, Any]]]:
        return [
            [
                a
                for a in fleet.state.alerts(m, count=500)
                if a["event"] == "raised" and (a["rule"], a["metric"]) == HOT
            ]
            for m in MACHINES
        ]

    assert wait_for(lambda: all(hot_alerts()), timeout=60), fleet.logs()
    # ... and the episodes published after them (the victim's last word on them)
    assert wait_for(lambda: all(map(fleet.state.episodes, MACHINES)), timeout=60)
    fleet.workers[victim].send_signal(signal.SIGKILL)
    fleet.workers[victim].wait(timeout=30)
    # the rest of each hot stretch: the survivor's first point of each orphaned machine
    # is a later point of an episode whose alert the victim published
    fleet.produce_each({m: h[1] for m, h in halves.items()})
    total = sum(fleet.produced.values())
    assert wait_for(lambda: fleet.stored() == total, timeout=240), fleet.logs()

    def all_on_survivor() -> bool:
        snaps = fleet.state.snapshots()
        return all(snaps[m].worker == survivor for m in MACHINES) and all(
            snaps[m].messages == fleet.produced[m] for m in MACHINES if owners[m] == survivor
        )

    assert wait_for(all_on_survivor, timeout=120), fleet.logs()
    _assert_history_exact(fleet)
    for m in MACHINES:
        raised = [a for a in fleet.state.alerts(m, count=500) if a["event"] == "raised"]
        assert len({a["id"] for a in raised}) == len(raised)
        keys = [(a["rule"], a["metric"], a["build_id"], a["time"]) for a in raised]
        assert len(set(keys)) == len(keys)
    # one alert per hot stretch, whoever processed its second half
    assert [len(h) for h in hot_alerts()] == [1] * len(MACHINES), (owners, hot_alerts())
    for m in (m for m in MACHINES if owners[m] == victim):
        # one alert per episode (group, signal, side of the center), whoever raised it
        by_episode: dict[tuple, set[str]] = {}
        for a in fleet.state.alerts(m, count=500):
            d = a["details"]
            if a["event"] == "raised" and not d.get("escalates"):
                session = a["id"].rsplit("-", 1)[0]
                by_episode.setdefault((d["episode"], a["metric"], d["side"]), set()).add(session)
        assert all(len(s) == 1 for s in by_episode.values()), (m, by_episode)
        # the survivor continued the victim's charts: the checkpoint was restored, and
        # the charts' point count and index run on over the whole stream (a rebuilt
        # chart would count from the survivor's first message and learn again)
        assert fleet.state.view(m)["takeover"]["restored"] is True, fleet.logs()
        temperature = fleet.state.spc(m)["signals"]["temperature"]
        assert fleet.state.spc(m)["points_seen"] == fleet.produced[m]
        assert temperature["status"] == "monitoring"
        assert temperature["latest"]["index"][-1] == fleet.produced[m] - 1
