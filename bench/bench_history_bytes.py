"""Disk cost of the embedded (SQLite) history per stored message.

Run ``python bench/bench_history_bytes.py`` (``--messages N``, default 100,000). Stores
a simulated build's messages the way the streaming client does (ids
``topic:partition:offset``, ``StreamStorage.prepare_batch`` + ``store_prepared`` in
batches of 1,000) and prints the file's bytes per message, with the raw JSON size of the
same messages (``json.dumps``, ISO timestamps) measured in the same run as the baseline,
and where the bytes go (table, indexes) when SQLite's ``dbstat`` is available.
No figure fails the run: the ratio is what to compare between versions.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.simulation.build_simulator import BuildSimulator  # noqa: E402
from am_qadf.streaming import StreamStorage  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    sim = BuildSimulator(seed=7, n_points=args.messages, n_defects=0, build_id="bench-1")
    folder = Path(tempfile.mkdtemp(prefix="amqadf-bytes-"))
    storage = StreamStorage(path=folder / "history.sqlite3")
    raw = stored = 0
    offset = 0
    for batch in sim.iter_batches(1000):
        raw += sum(len(json.dumps(m, default=lambda t: t.isoformat())) for m in batch)
        ids = [f"amqadf-stream:0:{offset + i}" for i in range(len(batch))]
        offset += len(batch)
        stored += storage.store_prepared(storage.prepare_batch(batch, ids))
    db = sqlite3.connect(folder / "history.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # what a long run holds: the WAL folded in
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    disk = sum(files.values())
    print(f"messages stored            {stored:,}")
    print(f"raw JSON (baseline)        {raw / stored:8.1f} B/message")
    print(
        f"SQLite history on disk     {disk / stored:8.1f} B/message  ({disk / raw:.2f}x raw JSON)"
    )
    print("files                      " + ", ".join(f"{k} {v:,} B" for k, v in files.items()))
    try:
        parts = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        for name, size in parts:
            print(f"  {name:<24} {size / stored:8.1f} B/message")
    except sqlite3.OperationalError:
        print("  (this SQLite has no dbstat: no breakdown)")
    db.close()


if __name__ == "__main__":
    main()
