"""Machine profiles against real servers: another machine's stream through real Kafka
into LiveMonitor, and SPC baselines per machine and recipe in the MongoDB-wire store."""

from __future__ import annotations

import uuid

import pymongo
import pytest

from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import KafkaProducer, StreamingConfig
from am_qadf.streaming.baseline_store import BaselineStore
from am_qadf.streaming.history_store import MongoHistory
from tests.eos_stream import EOS_PROFILE, eos_messages
from tests.waiting import wait_for


@pytest.fixture
def mongo_db_uri(mongo_uri):
    name = f"amqadf_prof_{uuid.uuid4().hex[:8]}"
    base = mongo_uri.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=3000)
    client.drop_database(name)
    client.close()


def test_baselines_round_trip_in_mongodb(mongo_db_uri) -> None:
    store = BaselineStore(MongoHistory(mongo_db_uri))
    assert store.backend == "mongodb" and store.load("m290-2", "316L") is None
    store.save("m290-2", "316L", {"temperature": {"kind": "ewma"}}, build_id="job-1")
    store.save("m290-2", "316L", {"temperature": {"kind": "ewma"}}, build_id="job-2")
    again = BaselineStore(MongoHistory(mongo_db_uri))
    assert again.load("m290-2", "316L")["build_id"] == "job-2"  # replaced, not added


def test_eos_stream_through_real_kafka_with_its_profile(
    kafka_bootstrap, unique_topic, mongo_db_uri, tmp_path
) -> None:
    producer = KafkaProducer([kafka_bootstrap], unique_topic)
    producer.produce_batch(eos_messages(12_000, hot=(9_000, 9_050)), key="m290-2")
    producer.flush()
    producer.close()
    cfg = MonitorConfig(
        streaming=StreamingConfig(
            kafka_bootstrap_servers=[kafka_bootstrap],
            kafka_topic=unique_topic,
            consumer_group_id=f"g-{unique_topic}",
            enable_redis_cache=False,
            mongodb_uri=mongo_db_uri,
            max_poll_records=1000,
        ),
        simulate=False,
        profile=MachineProfile.load(EOS_PROFILE),
    )
    mon = LiveMonitor(cfg)
    mon.start()
    try:
        assert wait_for(lambda: mon.snapshot()["stats"]["messages_processed"] >= 12_000, timeout=90)
        snap = mon.snapshot()
        assert snap["profile"]["problems"] == [] and snap["stats"]["dead_lettered"] == 0
        assert 2_250 < mon.spc_state()["signals"]["temperature"]["center"] < 2_350
        assert any(
            a.metric == "temperature" and a.rule == "threshold_high" for a in mon.alerts.history()
        )
        assert wait_for(lambda: mon.baseline_info()["origin"] == "learned", timeout=90)
        assert mon.baseline_info()["saved"]
    finally:
        mon.stop()
    # stored in MongoDB under (m290-2, 316L): the next build starts from it
    nxt = LiveMonitor(cfg)
    assert nxt.baseline_info()["origin"] == "stored"
    assert nxt.baseline_store.backend == "mongodb"
