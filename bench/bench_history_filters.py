"""History filters in the database (issue #11): the History tab's queries over 200,000
stored rows on the embedded SQLite history, with the filters translated to SQL, against
the baseline measured in the same run: the same query with only the time range in SQL
and every row decoded and filtered in Python (how it was before, though with today's
hashed ``$in``: the old per-value loop took 15 s for 5,000 values).

Target: a build id, a "Value >=" and a 5,000-value $in are each well under a second and
at least several times faster than the baseline; both give the same rows.
Run: python bench/bench_history_filters.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from am_qadf.streaming import StreamStorage, history_store

ROWS = 200_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    storage = StreamStorage(
        path=Path(tempfile.mkdtemp()) / "h.sqlite3", max_rows=10**7, query_timeout_s=600
    )
    docs = [
        {
            "timestamp": T0 + timedelta(milliseconds=i),
            "build_id": f"b{i % 20}",
            "layer": i // 1000,
            "temperature": 1500.0 + (i % 600),
            "x": float(i % 250),
        }
        for i in range(ROWS)
    ]
    for i in range(0, ROWS, 20_000):
        storage.store_batch(docs[i : i + 20_000])
    start, end = T0, T0 + timedelta(hours=1)
    cases = {
        "build_id": {"build_id": "b3"},
        "Value >= (temperature)": {"temperature": {"$gte": 2090.0}},
        "layer range": {"layer": {"$gte": 100, "$lte": 102}},
        "build and layers": {"build_id": "b3", "layer": {"$gte": 100, "$lte": 102}},
        "5,000-value $in (layer)": {
            "layer": {"$in": [7, 8, 9, 10, 11, *range(10**4, 10**4 + 4995)]}
        },
    }
    print(f"{ROWS:,} rows in the embedded history")
    worst = 0.0
    for name, filters in cases.items():
        t_sql, rows = timed(lambda f=filters: storage.query_stream_history(start, end, f))
        with mock.patch.object(history_store, "to_sql", lambda *a, **k: ("1", [])):
            t_py, base = timed(lambda f=filters: storage.query_stream_history(start, end, f))
        assert [d["_id"] for d in rows] == [d["_id"] for d in base], name
        ratio = t_py / t_sql
        worst = max(worst, t_sql)
        print(
            f"{name:>24}: {len(rows):>6,} rows in {t_sql * 1000:7.0f} ms; "
            f"Python filtering {t_py * 1000:7.0f} ms ({ratio:.1f}x)"
        )
    return 0 if worst < 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
