"""A consumer process for the crash tests: Kafka -> StreamingClient -> MongoDB.

Run: python fault_worker.py BOOTSTRAP TOPIC GROUP MONGO_URI COLLECTION PROGRESS_FILE
It consumes until killed (the tests kill it with SIGKILL at random moments) and keeps
"<documents inserted> <consumer lag>" in PROGRESS_FILE (counting a FerretDB collection
is slow, so the tests watch this instead).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pymongo

from am_qadf.streaming import StreamingClient, StreamingConfig, StreamStorage


def main() -> None:
    bootstrap, topic, group, mongo_uri, collection, progress = sys.argv[1:7]
    mongo = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=3000)
    storage = StreamStorage(mongo_client=mongo.get_default_database()[collection])
    config = StreamingConfig(
        kafka_bootstrap_servers=[bootstrap],
        consumer_group_id=group,
        enable_redis_cache=False,
        max_poll_records=500,
        auto_commit_interval_ms=1000,
        session_timeout_ms=6000,
    )
    client = StreamingClient(config, storage=storage)
    client.start_consumer([topic], lambda msgs: None)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("worker ready", flush=True)
    tmp = progress + ".tmp"
    while not stop:
        time.sleep(0.05)
        stats = client.get_stream_statistics()
        with open(tmp, "w") as f:
            f.write(f"{storage.stats['documents_inserted']} {stats['consumer_lag']}")
        os.replace(tmp, progress)
    client.stop_consumer()


if __name__ == "__main__":
    main()
