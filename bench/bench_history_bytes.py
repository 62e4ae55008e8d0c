"""Disk cost of the embedded (SQLite) history per stored message.

Run ``python bench/bench_history_bytes.py`` (``--messages N``, default 100,000). Stores
a simulated build's messages the way the streaming client does (ids
``topic:partition:offset``, ``StreamStorage.prepare_batch`` + ``store_prepared`` in
batches of 1,000) and prints the file's bytes per message against the raw JSON size of
the same messages (``json.dumps``, ISO timestamps), measured in the same run as the
baseline; then the same build with readings at full float precision (the simulator
before ``SENSOR_DECIMALS``), and where the bytes go (table, indexes) when SQLite's
``dbstat`` is available. No figure fails the run: the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.simulation import build_simulator  # noqa: E402
from am_qadf.streaming import StreamStorage  # noqa: E402


def store(n: int) -> tuple[int, int, Path]:
    """Store ``n`` simulated messages in a new history file: (stored, raw JSON bytes, folder)."""
    sim = build_simulator.BuildSimulator(seed=7, n_points=n, n_defects=0, build_id="bench-1")
    folder = Path(tempfile.mkdtemp(prefix="amqadf-bytes-"))
    storage = StreamStorage(path=folder / "history.sqlite3")
    raw = stored = offset = 0
    for batch in sim.iter_batches(1000):
        raw += sum(len(json.dumps(m, default=lambda t: t.isoformat())) for m in batch)
        ids = [f"amqadf-stream:0:{offset + i}" for i in range(len(batch))]
        offset += len(batch)
        stored += storage.store_prepared(storage.prepare_batch(batch, ids))
    db = sqlite3.connect(folder / "history.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # what a long run holds: the WAL folded in
    db.close()
    return stored, raw, folder


def disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    stored, raw, folder = store(args.messages)
    size = disk(folder)
    decimals = dict(build_simulator.SENSOR_DECIMALS)
    build_simulator.SENSOR_DECIMALS.clear()  # the readings as the model computes them
    try:
        full_stored, full_raw, full_folder = store(args.messages)
    finally:
        build_simulator.SENSOR_DECIMALS.update(decimals)
    full_size = disk(full_folder)
    print(f"messages stored                  {stored:,}")
    print(f"raw JSON (baseline)              {raw / stored:8.1f} B/message")
    print(
        f"SQLite history on disk           {size / stored:8.1f} B/message "
        f"({size / raw:.2f}x raw JSON)"
    )
    print(
        f"same, full-precision readings    {full_size / full_stored:8.1f} B/message "
        f"({full_size / full_raw:.2f}x their raw JSON of {full_raw / full_stored:.1f} B); "
        f"sensor decimals store {size / stored / (full_size / full_stored):.2f}x of that"
    )
    db = sqlite3.connect(folder / "history.sqlite3")
    try:
        parts = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        for name, part in parts:
            print(f"  {name:<30} {part / stored:8.1f} B/message")
    except sqlite3.OperationalError:
        print("  (this SQLite has no dbstat: no breakdown)")
    db.close()


if __name__ == "__main__":
    main()
