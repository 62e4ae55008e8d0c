"""``am-qadf simulate --machines N`` publishes N machines keyed by machine id."""

from __future__ import annotations

import uuid
from collections import Counter

from am_qadf.cli import main
from am_qadf.streaming.kafka_consumer import KafkaConsumer


def test_simulate_machines_keys_each_machine(capsys) -> None:  # noqa: ANN001
    bootstrap = f"memory://cli-{uuid.uuid4().hex}"
    rc = main(
        [
            "simulate",
            "--machines",
            "3",
            "--points",
            "300",
            "--builds",
            "1",
            "--rate",
            "30000",
            "--bootstrap",
            bootstrap,
            "--topic",
            "fleet",
        ]
    )
    assert rc == 0 and "published 900 messages of 3 machines" in capsys.readouterr().out
    consumer = KafkaConsumer([bootstrap], ["fleet"], group_id="check")
    got = []
    while batch := consumer.poll(timeout_ms=200):
        got += batch
    consumer.close()
    assert Counter(m["key"] for m in got) == {"m01": 300, "m02": 300, "m03": 300}
    builds = {m["key"]: m["value"]["build_id"] for m in got}
    assert builds == {"m01": "m01-7", "m02": "m02-107", "m03": "m03-207"}
