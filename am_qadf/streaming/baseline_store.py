"""SPC baselines per machine and recipe, kept beside the history.

A baseline learned on a good build is saved under ``(machine id, material)`` and
loaded for the next build of that machine and recipe (the golden build). It lives
where the history lives: a table of the embedded SQLite file, or a collection of
the MongoDB database; without storage, in memory.

>>> store = BaselineStore()
>>> _ = store.save("m290-2", "316L", {"temperature": {"kind": "ewma"}}, build_id="job-42")
>>> rec = store.load("m290-2", "316L")
>>> rec["build_id"], sorted(rec["baselines"]), store.load("m290-2", "Ti64") is None
('job-42', ['temperature'], True)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from .history_store import HistoryStore, MongoHistory, SqliteHistory

__all__ = ["BaselineStore"]

_TABLE = "spc_baselines"


def _key(machine_id: str, material: str) -> str:
    return json.dumps([machine_id, material])


class BaselineStore:
    """Save and load SPC baselines (``{signal: chart.to_dict()}``) by machine and recipe.

    ``history`` is the storage's history backend (None: keep them in memory).
    """

    def __init__(self, history: HistoryStore | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, Any]] = {}
        self._db: sqlite3.Connection | None = None
        self._collection: Any = None
        self.backend = "memory"
        if isinstance(history, SqliteHistory):
            self._db = sqlite3.connect(history.path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS "{_TABLE}" (key TEXT PRIMARY KEY, doc TEXT NOT NULL)'
            )
            self.backend = "sqlite"
        elif isinstance(history, MongoHistory):
            self._collection = history.collection.database[_TABLE]
            self.backend = "mongodb"

    def save(
        self,
        machine_id: str,
        material: str,
        baselines: dict[str, dict[str, Any]],
        *,
        build_id: str | None = None,
        learned_by: str | None = None,
    ) -> dict[str, Any]:
        """Store ``baselines`` as the golden baseline of (``machine_id``, ``material``),
        replacing the one before; return the stored record."""
        record = {
            "machine_id": machine_id,
            "material": material,
            "baselines": baselines,
            "build_id": build_id,
            "learned_by": learned_by,
            "learned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        key = _key(machine_id, material)
        text = json.dumps(record)  # JSON round trip: what is loaded equals what was saved
        with self._lock:
            if self._db is not None:
                self._db.execute(
                    f'INSERT OR REPLACE INTO "{_TABLE}" (key, doc) VALUES (?, ?)', (key, text)
                )
            elif self._collection is not None:
                self._collection.replace_one({"_id": key}, {"_id": key, "doc": text}, upsert=True)
            else:
                self._memory[key] = json.loads(text)
        return json.loads(text)

    def load(self, machine_id: str, material: str) -> dict[str, Any] | None:
        """The stored record of (``machine_id``, ``material``), or None."""
        key = _key(machine_id, material)
        with self._lock:
            if self._db is not None:
                row = self._db.execute(
                    f'SELECT doc FROM "{_TABLE}" WHERE key = ?', (key,)
                ).fetchone()
                return json.loads(row[0]) if row else None
            if self._collection is not None:
                doc = self._collection.find_one({"_id": key})
                return json.loads(doc["doc"]) if doc else None
            rec = self._memory.get(key)
            return json.loads(json.dumps(rec)) if rec is not None else None
