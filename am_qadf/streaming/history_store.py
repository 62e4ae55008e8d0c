"""Where stream history lives: MongoDB (pymongo) or an embedded SQLite file.

Both stores take prepared documents (see :func:`prepare_documents`), ignore
documents whose ``_id`` is already stored (so a replay stores nothing twice),
and return query results in ascending timestamp order.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import attrgetter, contains, itemgetter
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from . import cache_codec
from .history_filters import compile_filters, to_sql
from .serialization import JSON_SCALARS
from .timestamps import epoch_us_array, from_epoch_us, now_utc, to_epoch_us, to_utc

__all__ = [
    "HistoryStore",
    "HistoryResult",
    "SqliteHistory",
    "MongoHistory",
    "prepare_documents",
    "default_data_dir",
    "INDEXED_FIELDS",
    "STORABLE_TYPES",
]

log = logging.getLogger(__name__)

#: Metadata fields the simulator emits that history queries filter on.
INDEXED_FIELDS = ("build_id", "layer")


def default_data_dir() -> Path:
    """Folder of the embedded history file: ``$AMQADF_DATA_DIR`` or ``~/.local/share/am_qadf``."""
    env = os.environ.get("AMQADF_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "am_qadf"


#: Value types a document keeps as they are (see :func:`prepare_documents`).
STORABLE_TYPES = JSON_SCALARS | {datetime}
_TZINFO = attrgetter("tzinfo")


def _plain(value: Any) -> Any:
    if type(value) in JSON_SCALARS:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def prepare_documents(
    batch: Sequence[dict[str, Any]],
    ids: Sequence[str] | None = None,
    *,
    check_types: bool = True,
) -> list[dict[str, Any]]:
    """Copy ``batch`` into storable documents, or raise before anything is stored.

    numpy values become Python values, datetimes become aware UTC (naive ones are UTC),
    a missing ``timestamp`` becomes the ingest time, and a message that carries Kafka
    coordinates gets the deterministic ``_id`` ``"topic:partition:offset"``. ``ids``,
    when given, are the documents' ``_id``s (one per document). ``check_types=False``
    skips scanning every value, for batches of dicts with str keys known to hold JSON
    scalars and datetimes (validated messages); any other value is then left to the
    history backend's encoding, which converts it too.

    >>> prepare_documents([{"topic": "t", "partition": 0, "offset": 7, "value": 1}])[0]["_id"]
    't:0:7'
    >>> prepare_documents([{"value": 1}], ids=["b1:42"])[0]["_id"]
    'b1:42'
    """
    if not isinstance(batch, list | tuple):
        raise TypeError(f"batch_data must be a list of dicts, got {type(batch).__name__}")
    if ids is not None and len(ids) != len(batch):
        raise ValueError(f"ids has {len(ids)} entries for {len(batch)} documents")
    ingest = now_utc()
    if not check_types or _copies_as_is(batch):
        if ids is None:
            docs = [dict(item) for item in batch]
        else:  # the copy and the id in one step
            docs = [{**item, "_id": i} for item, i in zip(batch, ids, strict=True)]
            ids = None
    else:
        docs = []
        for i, item in enumerate(batch):
            if not isinstance(item, dict):
                raise TypeError(f"batch_data[{i}] must be a dict, got {type(item).__name__}")
            docs.append(
                {
                    (k if type(k) is str else str(k)): (v if type(v) in JSON_SCALARS else _plain(v))
                    for k, v in item.items()
                }
            )
    if ids is not None:
        for doc, i in zip(docs, ids, strict=True):
            doc["_id"] = i
    if _stamped_in_utc(docs) and all(map(contains, docs, repeat("_id"))):
        return docs  # e.g. documents of validated messages: nothing to fill in
    for i, doc in enumerate(docs):
        try:
            doc["timestamp"] = to_utc(doc["timestamp"]) if "timestamp" in doc else ingest
        except (TypeError, ValueError) as exc:
            raise ValueError(f"batch_data[{i}].timestamp: {exc}") from None
        if "_id" not in doc and all(k in doc for k in ("topic", "partition", "offset")):
            doc["_id"] = f"{doc['topic']}:{doc['partition']}:{doc['offset']}"
    return docs


def _stamped_in_utc(docs: list[dict[str, Any]]) -> bool:
    """True when every document's ``timestamp`` is already an aware UTC datetime."""
    try:
        stamps = list(map(itemgetter("timestamp"), docs))
    except KeyError:
        return False
    return set(map(type, stamps)) == {datetime} and set(map(_TZINFO, stamps)) == {UTC}


def _copies_as_is(batch: Sequence[Any]) -> bool:
    """True when every item is a dict of string keys and scalar or datetime values, the
    shape decoded and validated messages have: a plain copy then stores them faithfully."""
    if not set(map(type, batch)) <= {dict}:
        return False
    keys = set(chain.from_iterable(batch))  # few distinct keys: check those
    if not all(type(k) is str for k in keys):
        return False
    return set(map(type, chain.from_iterable(map(dict.values, batch)))) <= STORABLE_TYPES


class HistoryResult(list):
    """A history query's documents (a plain list, oldest first) that also says whether
    it was cut: ``truncated`` is True when more documents matched than the row limit
    allowed or the time budget ran out first; ``reason`` says which.

    >>> r = HistoryResult([{"v": 1}])
    >>> r, r.truncated, r.reason
    ([{'v': 1}], False, None)
    """

    truncated: bool = False
    reason: str | None = None

    def cut(self, reason: str) -> None:
        """Mark the result as cut short for ``reason``."""
        self.truncated, self.reason = True, reason


class HistoryStore(Protocol):
    """What :class:`StreamStorage` needs from a history backend."""

    name: str

    def encode(self, docs: list[dict[str, Any]]) -> Any:
        """The backend's write form of prepared ``docs``: the CPU-bound half of an insert,
        so a pipeline can do it in the thread that holds the interpreter anyway."""

    def insert_encoded(self, encoded: Any) -> tuple[int, int]:
        """Write what :meth:`encode` returned; return ``(inserted, duplicates)``;
        ``ConnectionError`` on outage."""

    def insert(self, docs: list[dict[str, Any]]) -> tuple[int, int]:
        """Store ``docs`` (``insert_encoded(encode(docs))``)."""

    def query(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any],
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> HistoryResult:
        """Up to ``limit`` documents, ``start <= timestamp <= end``, matching validated
        ``filters``, oldest first, found within ``timeout_s`` (the result says when it
        was cut)."""

    def create_indexes(self) -> list[str]:
        """Create the time-series indexes; return their names."""

    def delete_before(self, before: datetime) -> int:
        """Delete documents older than ``before``; return how many."""

    def count(self) -> int:
        """Number of stored documents."""

    def ping(self) -> bool:
        """True when the backend answers."""


_MISSING = object()
_W = 20  # characters of each number in the insert's table blob, sign included
#: "0000" ... "9999" as native uint32 words, and the powers of 10,000 that split an
#: int64 into _W // 4 groups of four digits (the first digit is 0 below 10**19).
_DIGIT_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)
_QUAD_POWERS = 10_000 ** np.arange(_W // 4 - 1, -1, -1, dtype=np.int64)
#: Row ``key`` of the batch: its document from the JSON array ?1, its timestamp and the
#: start and length of its id in ?3 from the fixed-width table ?2.
_INSERT = (
    'INSERT OR IGNORE INTO "{table}" (id, ts, doc) SELECT '
    f"CAST(substr(?3, CAST(substr(?2, key * {3 * _W} + {_W + 1}, {_W}) AS INTEGER), "
    f"CAST(substr(?2, key * {3 * _W} + {2 * _W + 1}, {_W}) AS INTEGER)) AS TEXT), "
    f"CAST(substr(?2, key * {3 * _W} + 1, {_W}) AS INTEGER), value FROM json_each(?1)"
)


def _fixed_width(numbers: np.ndarray) -> bytes:
    """``numbers`` (int64) as zero-padded decimal text of ``_W`` characters each, a sign
    or 0 first.

    >>> _fixed_width(np.array([[7, -42]]))[:4], len(_fixed_width(np.array([[7, -42]])))
    (b'0000', 40)
    >>> int(_fixed_width(np.array([-42]))), int(_fixed_width(np.array([2**62])))
    (-42, 4611686018427387904)
    """
    quads = _DIGIT_QUADS[np.abs(numbers)[..., None] // _QUAD_POWERS % 10_000]
    text = quads.view(np.uint8).reshape(*numbers.shape, _W)
    text[..., 0] = np.where(numbers < 0, ord("-"), ord("0"))
    return text.tobytes()


#: Bytes the write-ahead log of the embedded history is cut back to after a checkpoint.
_WAL_LIMIT = 64 * 2**20


class _SqliteRows(NamedTuple):
    """The parameters of one ``_INSERT``: documents, their (ts, id start, id length)
    table and their ids."""

    payload: bytes
    table: bytes
    ids: bytes


class SqliteHistory:
    """History in one SQLite file: survives restarts, needs no server.

    >>> import tempfile
    >>> h = SqliteHistory(Path(tempfile.mkdtemp()) / "h.sqlite3")
    >>> h.insert(prepare_documents([{"value": 1.0}]))
    (1, 0)
    """

    name = "sqlite"

    def __init__(self, path: str | Path, table: str = "stream_data") -> None:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"collection_name must be letters, digits and '_', got {table!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        #: Where the history is, for health views: the file.
        self.location = str(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # after a checkpoint the write-ahead log is cut back to this size (it otherwise
        # keeps the largest size it ever reached on disk)
        self._db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        self._db.execute(
            f'CREATE TABLE IF NOT EXISTS "{table}" '
            "(id TEXT PRIMARY KEY, ts INTEGER NOT NULL, doc BLOB NOT NULL)"
        )
        self._db.execute(f'CREATE INDEX IF NOT EXISTS "{table}_ts" ON "{table}" (ts)')
        # The History tab filters by build and layers: one index serves both (a second
        # per-field index would cost another JSON parse per insert; create_indexes adds
        # them on request).
        v = "json_extract(doc, '$.{}')".format
        self._db.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_build_id_layer_ts" ON "{table}" '
            f"({v('build_id')}, {v('layer')}, ts)"
        )

    def insert(self, docs: list[dict[str, Any]]) -> tuple[int, int]:
        return self.insert_encoded(self.encode(docs))

    def encode(self, docs: list[dict[str, Any]]) -> _SqliteRows:
        # _id and timestamp live in their own columns (the timestamp exact to the
        # microsecond) and are taken out of each document while the batch is encoded,
        # then put back. SQLite gets the documents as one JSON array plus a blob of
        # fixed-width (ts, id start, id length) numbers and a blob of the ids, so the
        # insert runs in one call without the GIL and parses each document once.
        ids = [d.pop("_id", None) for d in docs]
        stamps = [d.pop("timestamp", _MISSING) for d in docs]
        try:
            payload = cache_codec.encode(docs)
        finally:
            for d, doc_id, stamp in zip(docs, ids, stamps, strict=True):
                if stamp is not _MISSING:
                    d["timestamp"] = stamp
                if doc_id is not None:
                    d["_id"] = doc_id
        ts = epoch_us_array(stamps)  # prepared documents all have one
        texts = [str(i or uuid.uuid4().hex) for i in ids]
        id_blob = "".join(texts).encode()
        id_lens = np.fromiter(map(len, texts), np.int64, len(texts))
        if len(id_blob) != id_lens.sum():  # not all ASCII: lengths in bytes
            id_lens = np.array([len(t.encode()) for t in texts], dtype=np.int64)
        starts = np.cumsum(id_lens) - id_lens + 1
        table = _fixed_width(np.stack((ts, starts, id_lens), axis=1))
        return _SqliteRows(payload, table, id_blob)

    def insert_encoded(self, encoded: _SqliteRows) -> tuple[int, int]:
        with self._lock:
            before = self._db.total_changes
            # One statement is one transaction (autocommit), and one release of the GIL:
            # taking it back costs up to a switch interval while another thread runs.
            self._db.execute(_INSERT.format(table=self.table), encoded)
            inserted = self._db.total_changes - before
        return inserted, len(encoded.table) // (3 * _W) - inserted

    def query(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any],
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> HistoryResult:
        # The filter runs in SQLite (to_sql: a condition every match satisfies, using the
        # field indexes); matches() then decides exactly, as MongoDB would.
        where, params = (
            to_sql(filters, scalar_fields=self._scalar_fields()) if filters else ("1", [])
        )
        match = compile_filters(filters) if filters else None
        sql = (
            f'SELECT id, doc, ts, rowid FROM "{self.table}" WHERE ts <= ? AND '
            f"(ts, rowid) > (?, ?) AND ({where}) ORDER BY ts, rowid LIMIT 5000"
        )
        end_us = to_epoch_us(end)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out = HistoryResult()
        last_ts, last_rowid = to_epoch_us(start), -1
        # Read in pages and decode outside the lock, so a long query never stalls writes.
        while True:
            with self._lock:
                if deadline is not None:  # SQLite calls it every 10,000 steps: stop there
                    self._db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
                try:
                    rows = self._db.execute(sql, (end_us, last_ts, last_rowid, *params)).fetchall()
                except sqlite3.OperationalError as exc:
                    if "interrupt" not in str(exc):
                        raise
                    rows = None
                finally:
                    if deadline is not None:
                        self._db.set_progress_handler(None, 0)
            if rows is None or (deadline is not None and time.monotonic() > deadline):
                out.cut(f"time budget of {timeout_s} s spent")
                break
            if not rows:
                break
            last_ts, last_rowid = rows[-1][2], rows[-1][3]
            for doc_id, blob, ts, _rowid in rows:
                doc = {"timestamp": from_epoch_us(ts), **cache_codec.decode(blob)}
                doc["_id"] = doc_id  # before matching: filters may name it, as on MongoDB
                if match is None or match(doc):
                    out.append(doc)
            if limit is not None and len(out) > limit:
                del out[limit:]
                out.cut(f"row limit of {limit} reached")
                break
        return out

    def create_indexes(self) -> list[str]:
        return self._create_indexes()

    def _scalar_fields(self) -> list[str]:
        """The fields leading an index that no stored document holds an array or object
        in (nor a text starting ``[`` or ``{``): two index lookups each."""
        out = []
        with self._lock:
            names = {
                name
                for (name,) in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                    (self.table,),
                )
            }
            leading = {f for f in INDEXED_FIELDS if f"{self.table}_{f}_ts" in names}
            if f"{self.table}_build_id_layer_ts" in names:
                leading.add("build_id")
            for field in (f for f in INDEXED_FIELDS if f in leading):
                value = f"json_extract(doc, '$.{field}')"
                if not any(
                    self._db.execute(
                        f'SELECT 1 FROM "{self.table}" WHERE {value} >= ? AND {value} < ? LIMIT 1',
                        bounds,
                    ).fetchone()
                    for bounds in (("[", "\\"), ("{", "|"))
                ):
                    out.append(field)
        return out

    def _create_indexes(self) -> list[str]:
        names = [f"{self.table}_ts"]
        with self._lock:
            for field in INDEXED_FIELDS:
                name = f"{self.table}_{field}_ts"
                self._db.execute(
                    f'CREATE INDEX IF NOT EXISTS "{name}" ON "{self.table}" '
                    f"(json_extract(doc, '$.{field}'), ts)"
                )
                names.append(name)
        return names

    def delete_before(self, before: datetime) -> int:
        with self._lock:
            cur = self._db.execute(
                f'DELETE FROM "{self.table}" WHERE ts < ?', (to_epoch_us(before),)
            )
            return cur.rowcount

    def count(self) -> int:
        with self._lock:
            return self._db.execute(f'SELECT COUNT(*) FROM "{self.table}"').fetchone()[0]

    def disk_bytes(self) -> int:
        """Bytes the history takes on disk: the database file and its write-ahead log
        (pages freed by deletions stay in the file and are reused by later inserts).

        >>> import tempfile
        >>> h = SqliteHistory(Path(tempfile.mkdtemp()) / "h.sqlite3")
        >>> _ = h.insert(prepare_documents([{"v": 1.0}]))
        >>> h.disk_bytes() >= h.used_bytes() > 0
        True
        """
        if str(self.path) == ":memory:":
            return self.used_bytes()
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def used_bytes(self) -> int:
        """Bytes of the database's pages that hold data (free pages not counted).

        >>> SqliteHistory(":memory:").used_bytes() % 4096
        0
        """
        with self._lock:
            pages, free, size = (
                self._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("page_count", "freelist_count", "page_size")
            )
        return (pages - free) * size

    def trim_to(self, max_bytes: int, *, chunk: int = 20_000) -> int:
        """Delete the oldest documents, ``chunk`` at a time (the lock is let go between
        chunks, so writers go on), until the data takes at most ``max_bytes``; return how
        many went. Freed pages are reused by later inserts, so the file stops growing.

        >>> import tempfile
        >>> h = SqliteHistory(Path(tempfile.mkdtemp()) / "h.sqlite3")
        >>> _ = h.insert(prepare_documents([{"v": "x" * 500} for _ in range(2000)]))
        >>> h.trim_to(200_000, chunk=100) > 0, h.used_bytes() <= 200_000
        (True, True)
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        deleted = 0
        while (used := self.used_bytes()) > max_bytes:
            with self._lock:
                # rowids grow with inserts and go from the oldest end: their span is a
                # cheap upper bound of the row count, so this deletes about the excess
                lo, hi = self._db.execute(
                    f'SELECT min(rowid), max(rowid) FROM "{self.table}"'
                ).fetchone()
                rows = 0 if lo is None else hi - lo + 1
                excess = int(np.ceil((used - max_bytes) / max(used / max(rows, 1), 1.0)))
                gone = self._db.execute(
                    f'DELETE FROM "{self.table}" WHERE rowid IN '
                    f'(SELECT rowid FROM "{self.table}" ORDER BY ts, rowid LIMIT ?)',
                    (int(min(chunk, max(excess, 1))),),
                ).rowcount
            if gone <= 0:
                break
            deleted += gone
        return deleted

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MongoHistory:
    """History in a MongoDB (or MongoDB-wire) collection through pymongo."""

    name = "mongodb"

    def __init__(self, mongo_client: Any, collection_name: str = "stream_data") -> None:
        from pymongo import MongoClient
        from pymongo.collection import Collection
        from pymongo.database import Database

        if isinstance(mongo_client, str):
            mongo_client = MongoClient(mongo_client, serverSelectionTimeoutMS=3000, tz_aware=True)
        if isinstance(mongo_client, Collection):
            self.collection = mongo_client
        elif isinstance(mongo_client, Database):
            self.collection = mongo_client[collection_name]
        elif isinstance(mongo_client, MongoClient):
            db = mongo_client.get_default_database(default="am_qadf")
            self.collection = db[collection_name]
        else:
            raise TypeError(
                "mongo_client must be a pymongo MongoClient, Database, Collection or URI string, "
                f"got {type(mongo_client).__name__}"
            )
        #: Where the history is, for health views: database and collection.
        self.location = f"{self.collection.database.name}.{self.collection.name}"

    def insert(self, docs: list[dict[str, Any]]) -> tuple[int, int]:
        return self.insert_encoded(self.encode(docs))

    def encode(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Copies (pymongo adds a missing _id to what it is given) with every value made
        # BSON-ready, also in documents prepared without the type scan.
        return prepare_documents(docs)

    def insert_encoded(self, docs: list[dict[str, Any]]) -> tuple[int, int]:
        from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure

        if not docs:
            return 0, 0
        try:
            result = self.collection.insert_many(docs, ordered=False)
            return len(result.inserted_ids), 0
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != 11000]
            if others:
                raise RuntimeError(
                    f"MongoDB rejected documents: {others[0].get('errmsg')}"
                ) from exc
            return exc.details.get("nInserted", 0), len(errors)
        except (ConnectionFailure, AutoReconnect) as exc:
            raise ConnectionError(f"MongoDB unreachable: {exc}") from exc

    def query(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any],
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> HistoryResult:
        from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout

        # validated filters are plain field comparisons: MongoDB runs them as they are
        time_range = {"timestamp": {"$gte": to_utc(start), "$lte": to_utc(end)}}
        query = {"$and": [time_range, filters]} if filters else time_range
        docs = HistoryResult()
        try:
            cursor = self.collection.find(query).sort([("timestamp", 1), ("_id", 1)])
            if limit:
                cursor = cursor.limit(int(limit) + 1)  # one more: was it cut?
            if timeout_s is not None:
                cursor = cursor.max_time_ms(max(1, int(timeout_s * 1000)))
            docs.extend(cursor)
        except ExecutionTimeout:
            docs.cut(f"time budget of {timeout_s} s spent")
        except (ConnectionFailure, AutoReconnect) as exc:
            raise ConnectionError(f"MongoDB unreachable: {exc}") from exc
        if limit and len(docs) > limit:
            del docs[limit:]
            docs.cut(f"row limit of {limit} reached")
        for d in docs:
            d["_id"] = str(d["_id"])
            if isinstance(d.get("timestamp"), datetime):
                d["timestamp"] = to_utc(d["timestamp"])
        return docs

    def create_indexes(self) -> list[str]:
        names = [self.collection.create_index([("timestamp", 1)], name="timestamp_1")]
        for field in INDEXED_FIELDS:
            names.append(
                self.collection.create_index(
                    [(field, 1), ("timestamp", 1)], name=f"{field}_1_timestamp_1"
                )
            )
        names.append(
            self.collection.create_index(
                [("build_id", 1), ("layer", 1), ("timestamp", 1)],
                name="build_id_1_layer_1_timestamp_1",
            )
        )
        return names

    def delete_before(self, before: datetime) -> int:
        return self.collection.delete_many({"timestamp": {"$lt": to_utc(before)}}).deleted_count

    def count(self) -> int:
        return self.collection.count_documents({})

    def ping(self) -> bool:
        try:
            self.collection.database.command("ping")
            return True
        except Exception:
            return False
