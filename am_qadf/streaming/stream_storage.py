"""Stream data storage: Redis (or an in-process cache) for recent state, MongoDB (or an
embedded SQLite file) for history, with a bounded spool that rides out storage outages."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from . import cache_codec
from .history_filters import validate_filters
from .history_store import (
    HistoryResult,
    HistoryStore,
    MongoHistory,
    SqliteHistory,
    default_data_dir,
    prepare_documents,
)
from .timestamps import to_utc
from .ttl_cache import TTLCache

__all__ = ["StreamStorage", "SpoolFullError", "PreparedBatch", "connect_redis"]

log = logging.getLogger(__name__)


class SpoolFullError(RuntimeError):
    """History storage is unreachable and the spool is full: slow down and retry."""


class PreparedBatch(NamedTuple):
    """Documents made ready by :meth:`StreamStorage.prepare_batch`: the prepared
    documents, and their write form for ``history`` in chunks of ``batch_size``;
    ``positions`` holds each document's index in the batch given, ``rejected`` the
    ``(index, reason)`` of documents that could not be prepared or stored (filled while
    storing too: one bad document never costs the others of its batch)."""

    docs: list[dict[str, Any]]
    chunks: list[Any]
    history: HistoryStore
    positions: list[int] | None = None
    rejected: list[tuple[int, str]] | None = None


def connect_redis(
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    *,
    username: str | None = None,
    password: str | None = None,
    ssl: bool = False,
) -> Any:
    """A ``redis.Redis`` client for ``host:port`` database ``db``, with short socket
    timeouts so an outage degrades the cache instead of stalling the stream. It connects
    on first use, so building it never fails on an unreachable server.

    >>> connect_redis("127.0.0.1", 6380, 2).connection_pool.connection_kwargs["db"]
    2
    >>> connect_redis(port=0)
    Traceback (most recent call last):
    ...
    ValueError: redis_port must be an int in 1..65535, got 0
    """
    if not isinstance(host, str) or not host:
        raise ValueError(f"redis_host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"redis_port must be an int in 1..65535, got {port!r}")
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ValueError(f"redis_db must be an int >= 0, got {db!r}")
    import redis

    return redis.Redis(
        host=host,
        port=port,
        db=db,
        username=username,
        password=password,
        ssl=ssl,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
    )


class StreamStorage:
    """Cache recent data and keep the stream's history.

    With no clients it runs embedded: an in-process TTL cache and a SQLite history file
    (``path``, default under :func:`default_data_dir`) that survives restarts.
    ``mongo_client`` may be a pymongo ``MongoClient`` (database from its URI, default
    ``am_qadf``), ``Database``, ``Collection`` or a URI string; ``redis_client`` a
    ``redis.Redis``. Instead of a Redis client, ``redis_host`` / ``redis_port`` /
    ``redis_db`` (and ``redis_username`` for an ACL user, ``redis_password``,
    ``redis_ssl``) name a server to connect to (:func:`connect_redis`; unset parts take
    the spec's defaults localhost, 6379, 0). Given none of them the cache stays
    in-process: unlike the published AM-QADF, no server is tried silently, so what is
    used is what was asked for. When MongoDB is unreachable, batches wait in a spool of
    at most ``spool_limit`` documents and are written, in order, when it is back.
    Documents are written ``batch_size`` at a time. A history query returns at most
    ``max_rows`` documents and runs at most ``query_timeout_s`` seconds.

    >>> import tempfile
    >>> from datetime import datetime, timedelta
    >>> storage = StreamStorage(path=tempfile.mkdtemp() + "/history.sqlite3")
    >>> storage.store_batch([{"value": 1.0, "timestamp": datetime.now()}])
    1
    >>> len(storage.query_stream_history(datetime.now() - timedelta(hours=1), datetime.now()))
    1
    """

    def __init__(
        self,
        redis_client: Any | None = None,
        mongo_client: Any | None = None,
        collection_name: str = "stream_data",
        *,
        path: str | Path | None = None,
        spool_limit: int = 200_000,
        key_prefix: str = "",
        batch_size: int = 1000,
        redis_host: str | None = None,
        redis_port: int | None = None,
        redis_db: int | None = None,
        redis_username: str | None = None,
        redis_password: str | None = None,
        redis_ssl: bool = False,
        max_rows: int = 200_000,
        query_timeout_s: float = 30.0,
    ) -> None:
        address = (redis_host, redis_port, redis_db)
        if redis_client is None and any(a is not None for a in address):
            redis_client = connect_redis(
                "localhost" if redis_host is None else redis_host,
                6379 if redis_port is None else redis_port,
                0 if redis_db is None else redis_db,
                username=redis_username,
                password=redis_password,
                ssl=redis_ssl,
            )
        elif any(a is not None for a in address):
            raise ValueError(
                "give redis_client or redis_host/redis_port/redis_db, not both: "
                "the address would be ignored"
            )
        if not isinstance(collection_name, str) or not collection_name:
            raise ValueError(f"collection_name must be a non-empty string, got {collection_name!r}")
        if spool_limit < 0:
            raise ValueError(f"spool_limit must be >= 0, got {spool_limit}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if not 0 < query_timeout_s < float("inf"):
            raise ValueError(f"query_timeout_s must be a positive number, got {query_timeout_s}")
        self.max_rows = int(max_rows)
        self.query_timeout_s = float(query_timeout_s)
        self.batch_size = int(batch_size)
        self.collection_name = collection_name
        self.key_prefix = key_prefix
        self.redis = redis_client
        self._cache: Any = redis_client if redis_client is not None else TTLCache()
        self.history: HistoryStore
        if mongo_client is not None:
            self.history = MongoHistory(mongo_client, collection_name)
        else:
            self.history = SqliteHistory(
                Path(path) if path else default_data_dir() / "history.sqlite3", collection_name
            )
        self.spool_limit = int(spool_limit)
        self._spool: deque[PreparedBatch] = deque()
        self._spooled = 0
        self._lock = threading.RLock()
        self._cache_ok = True
        self._history_ok = True
        self._retry_at = 0.0
        self.retry_interval_s = 1.0
        # While Redis is down each call can block for the client's timeouts and retries
        # (seconds); calls are skipped until the next retry, which backs off to the max.
        self.cache_retry_interval_s = 1.0
        self.cache_retry_max_s = 15.0
        self._cache_retry_at = 0.0
        self._cache_backoff_s = 0.0
        self.stats = {
            "documents_inserted": 0,
            "duplicates_ignored": 0,
            "cache_writes": 0,
            "cache_failures": 0,
            "cache_skipped": 0,
            "spooled_total": 0,
            "rejected_documents": 0,
        }
        self.rejected: deque[tuple[str, list[dict[str, Any]]]] = deque(maxlen=100)

    @property
    def redis_client(self) -> Any | None:
        """The ``redis.Redis`` client the cache uses (None: the in-process cache).

        >>> client = StreamStorage(redis_port=6390, path=":memory:").redis_client
        >>> client.connection_pool.connection_kwargs["port"]
        6390
        """
        return self.redis

    @property
    def mongo_client(self) -> Any | None:
        """The pymongo ``MongoClient`` history goes to (None: the embedded SQLite file).

        >>> print(StreamStorage(path=":memory:").mongo_client)
        None
        """
        history = self.history
        return history.collection.database.client if isinstance(history, MongoHistory) else None

    # -- cache --------------------------------------------------------------------------
    def _cache_failed(self, exc: Exception) -> None:
        self.stats["cache_failures"] += 1
        if self._cache_ok:  # log once per outage, not once per call
            log.warning("Redis cache unavailable, caching is degraded: %s", type(exc).__name__)
        self._cache_ok = False
        self._cache_backoff_s = min(
            self.cache_retry_max_s, max(self.cache_retry_interval_s, 2 * self._cache_backoff_s)
        )
        self._cache_retry_at = time.monotonic() + self._cache_backoff_s

    def _cache_resting(self) -> bool:
        """True (and counted) while a failed cache waits for its next retry."""
        if self._cache_ok or time.monotonic() >= self._cache_retry_at:
            return False
        self.stats["cache_skipped"] += 1
        return True

    def _cache_recovered(self) -> None:
        if not self._cache_ok:
            log.info("Redis cache reachable again")
        self._cache_ok = True
        self._cache_backoff_s = 0.0

    def cache_recent_data(self, key: str, data: dict[str, Any], ttl_seconds: int = 3600) -> bool:
        """Cache ``data`` under ``key`` for ``ttl_seconds``; False when the cache is down."""
        return self.cache_many({key: data}, ttl_seconds) == 1

    def cache_many(self, items: dict[str, dict[str, Any]], ttl_seconds: int = 3600) -> int:
        """Cache several entries in one round trip (a Redis pipeline); return how many."""
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be a positive int, got {ttl_seconds!r}")
        encoded = {}
        for key, data in items.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"key must be a non-empty string, got {key!r}")
            if not isinstance(data, dict):
                raise TypeError(f"data for key {key!r} must be a dict, got {type(data).__name__}")
            encoded[self.key_prefix + key] = cache_codec.encode(data)
        if self._cache_resting():
            return 0
        try:
            if self.redis is not None:
                pipe = self.redis.pipeline(transaction=False)
                for k, v in encoded.items():
                    pipe.execute_command("SETEX", k, ttl_seconds, v)
                pipe.execute()
            else:
                for k, v in encoded.items():
                    self._cache.setex(k, ttl_seconds, v)
        except Exception as exc:  # redis-py raises ConnectionError/TimeoutError/RedisError
            self._cache_failed(exc)
            return 0
        self._cache_recovered()
        self.stats["cache_writes"] += len(encoded)
        return len(encoded)

    def get_cached_data(self, key: str) -> dict[str, Any] | None:
        """Return what :meth:`cache_recent_data` stored under ``key`` (None if absent/expired
        or the cache is down)."""
        if self._cache_resting():
            return None
        try:
            raw = self._cache.get(self.key_prefix + key)
        except Exception as exc:
            self._cache_failed(exc)
            return None
        self._cache_recovered()
        return None if raw is None else cache_codec.decode(raw)

    # -- history ------------------------------------------------------------------------
    def store_batch(self, batch_data: list[dict[str, Any]]) -> int:
        """Store documents; return how many were inserted now.

        Documents already stored (same ``_id``) are skipped, not errors. While the
        history backend is unreachable the batch is spooled (0 returned) and written
        first on a later call; a full spool raises :class:`SpoolFullError` with
        nothing taken.
        """
        return self.store_prepared(self.prepare_batch(batch_data))

    def prepare_batch(
        self,
        batch_data: list[dict[str, Any]],
        ids: list[str] | None = None,
        *,
        check_types: bool = True,
        isolate: bool = False,
    ) -> PreparedBatch:
        """Check, copy and encode documents for :meth:`store_prepared`, or raise before
        anything is stored: the CPU-bound half of :meth:`store_batch`. ``ids`` and
        ``check_types`` are :func:`prepare_documents`'. With ``isolate`` a document that
        cannot be prepared is left out and listed in ``rejected`` instead (a stream
        sets one bad message aside, not its batch).

        A pipeline prepares in the thread that decodes and processes, and writes in
        another: one thread then holds the interpreter lock and the writer only waits
        for the backend, instead of both threads trading the lock batch after batch.

        >>> import tempfile
        >>> storage = StreamStorage(path=tempfile.mkdtemp() + "/history.sqlite3")
        >>> prepared = storage.prepare_batch([{"value": 1.0}, {"value": 2.0}])
        >>> len(prepared.docs), storage.store_prepared(prepared)
        (2, 2)
        """
        history, step = self.history, self.batch_size
        try:
            docs = prepare_documents(batch_data, ids, check_types=check_types)
            chunks = [history.encode(docs[i : i + step]) for i in range(0, len(docs), step)]
            return PreparedBatch(docs, chunks, history, list(range(len(docs))), [])
        except (TypeError, ValueError, OverflowError):
            if not isolate or not isinstance(batch_data, list | tuple):
                raise
        # one document is bad: prepare them one by one and set the bad ones aside
        docs, positions, rejected = [], [], []
        for i, item in enumerate(batch_data):
            try:
                doc = prepare_documents([item], None if ids is None else [ids[i]])
                history.encode(doc)
            except (TypeError, ValueError, OverflowError) as exc:
                rejected.append((i, f"{type(exc).__name__}: {exc}"))
                continue
            docs.extend(doc)
            positions.append(i)
        chunks = [history.encode(docs[i : i + step]) for i in range(0, len(docs), step)]
        return PreparedBatch(docs, chunks, history, positions, rejected)

    def store_prepared(self, prepared: PreparedBatch) -> int:
        """Store what :meth:`prepare_batch` returned, as :meth:`store_batch` does."""
        if not isinstance(prepared, PreparedBatch):
            raise TypeError(f"expected a PreparedBatch, got {type(prepared).__name__}")
        n = len(prepared.docs)
        with self._lock:
            if n and self._spooled + n > self.spool_limit and not self._drain():
                raise SpoolFullError(
                    f"history storage unreachable and spool full ({self._spooled} documents)"
                )
            if not self._drain():
                self._spool_batch(prepared)
                return 0
            try:
                return self._insert(prepared)
            except ConnectionError as exc:
                self._history_down(exc)
                if self._spooled + n > self.spool_limit:
                    raise SpoolFullError(
                        f"history storage unreachable and {n} documents exceed the "
                        f"spool limit of {self.spool_limit}"
                    ) from exc
                self._spool_batch(prepared)
                return 0

    def _spool_batch(self, prepared: PreparedBatch) -> None:
        if n := len(prepared.docs):
            self._spool.append(prepared)
            self._spooled += n
            self.stats["spooled_total"] += n

    def _insert(self, prepared: PreparedBatch) -> int:
        history, chunks = self.history, prepared.chunks
        if prepared.history is not history:  # the backend was replaced since: encode anew
            chunks = self.prepare_batch(prepared.docs).chunks
        inserted, step = 0, self.batch_size
        for k, chunk in enumerate(chunks):  # one write per storage batch
            try:
                n, dups = history.insert_encoded(chunk)
            except ConnectionError:
                raise
            except Exception:  # the server refuses a document: find it, store the others
                n, dups = self._isolate(prepared, k * step, (k + 1) * step)
            inserted += n
            self.stats["documents_inserted"] += n
            self.stats["duplicates_ignored"] += dups
        if not self._history_ok:
            log.info("History storage reachable again")
        self._history_ok = True
        return inserted

    def _isolate(self, prepared: PreparedBatch, lo: int, hi: int) -> tuple[int, int]:
        """Insert ``prepared.docs[lo:hi]`` halving on refusal, so only the documents the
        backend refuses by themselves are left out; they go to ``prepared.rejected``
        (and :attr:`rejected`). ``(inserted, duplicates)``; ``ConnectionError`` passes."""
        docs = prepared.docs[lo:hi]
        if not docs:
            return 0, 0
        try:
            return self.history.insert(docs)
        except ConnectionError:
            raise
        except Exception as exc:
            if len(docs) > 1:
                mid = (lo + min(hi, len(prepared.docs))) // 2
                a, b = self._isolate(prepared, lo, mid), self._isolate(prepared, mid, hi)
                return a[0] + b[0], a[1] + b[1]
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.error("history storage refused document %r: %s", docs[0].get("_id"), reason)
            position = prepared.positions[lo] if prepared.positions is not None else lo
            if prepared.rejected is not None:
                prepared.rejected.append((position, reason))
            self.rejected.append((reason, docs))
            self.stats["rejected_documents"] += 1
            return 0, 0

    def _history_down(self, exc: Exception) -> None:
        if self._history_ok:
            log.warning("History storage unreachable, spooling: %s", exc)
        self._history_ok = False
        # While down, retry at most once per interval so the stream is not stalled
        # by a server-selection timeout on every batch.
        self._retry_at = time.monotonic() + self.retry_interval_s

    def _drain(self) -> bool:
        """Write spooled batches in order; True when the spool is empty."""
        if self._spool and not self._history_ok and time.monotonic() < self._retry_at:
            return False
        while self._spool:
            try:
                self._insert(self._spool[0])
            except ConnectionError as exc:
                self._history_down(exc)
                return False
            except Exception as exc:
                # The server refuses these documents; retrying would block every later
                # batch. Keep them aside (bounded), counted and logged.
                docs = self._spool[0].docs
                log.error("history storage rejected %d spooled documents: %s", len(docs), exc)
                self.rejected.append((str(exc), docs))
                self.stats["rejected_documents"] += len(docs)
            self._spooled -= len(self._spool.popleft().docs)
        return True

    def flush_spool(self) -> bool:
        """Try to write spooled documents now; True when nothing is left waiting."""
        with self._lock:
            return self._drain()

    @property
    def spooled(self) -> int:
        """Documents waiting for the history backend."""
        return self._spooled

    def query_stream_history(
        self,
        start_time: datetime,
        end_time: datetime,
        filters: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
    ) -> HistoryResult:
        """Documents with ``start_time <= timestamp <= end_time`` that match ``filters``,
        oldest first (the first ``limit`` of them, at most :attr:`max_rows`). The time
        range always applies; filters run in the database; ``$where``, ``$function``
        and ``$accumulator`` are refused.

        The result is a list; its ``truncated`` attribute is True (and ``reason`` says
        why) when it was cut at the row limit or the time budget (``query_timeout_s``).

        >>> import tempfile
        >>> from datetime import datetime, timedelta
        >>> storage = StreamStorage(path=tempfile.mkdtemp() + "/h.sqlite3", max_rows=1)
        >>> storage.store_batch([{"layer": i, "timestamp": datetime.now()} for i in (1, 2)])
        2
        >>> t = datetime.now()
        >>> docs = storage.query_stream_history(t - timedelta(hours=1), t, {"layer": {"$gte": 1}})
        >>> len(docs), docs.truncated, docs.reason
        (1, True, 'row limit of 1 reached')
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        start, end = to_utc(start_time, name="start_time"), to_utc(end_time, name="end_time")
        if end < start:
            raise ValueError(f"end_time {end.isoformat()} is before start_time {start.isoformat()}")
        checked = validate_filters(filters)
        rows = self.max_rows if limit is None else min(limit, self.max_rows)
        return self.history.query(start, end, checked, rows, self.query_timeout_s)

    def create_time_series_index(self) -> None:
        """Index ``timestamp`` and the (build_id | layer, timestamp) pairs queries use."""
        self.history.create_indexes()

    def delete_old_data(self, before_time: datetime) -> int:
        """Delete documents older than ``before_time``; return how many."""
        return self.history.delete_before(to_utc(before_time, name="before_time"))

    def history_disk_bytes(self) -> int | None:
        """Bytes the embedded history file takes on disk (with its write-ahead log);
        None for MongoDB, which keeps its own storage.

        >>> StreamStorage(path=":memory:").history_disk_bytes() >= 0
        True
        """
        history = self.history
        return history.disk_bytes() if isinstance(history, SqliteHistory) else None

    def trim_history(self, max_bytes: int) -> int:
        """Delete the oldest documents of the embedded history file until its data takes
        at most ``max_bytes``; return how many went. The file then stops growing: later
        inserts reuse the freed pages. ``TypeError`` for MongoDB (its deployment bounds
        its own storage).

        >>> import tempfile
        >>> storage = StreamStorage(path=tempfile.mkdtemp() + "/history.sqlite3")
        >>> _ = storage.store_batch([{"note": "x" * 500} for _ in range(2000)])
        >>> storage.trim_history(300_000) > 0, storage.history_disk_bytes() > 0
        (True, True)
        """
        history = self.history
        if not isinstance(history, SqliteHistory):
            raise TypeError(f"only the embedded history file can be trimmed, not {history.name}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        return history.trim_to(max_bytes)

    def get_statistics(self) -> dict[str, Any]:
        """Everything :meth:`health` reports, plus ``collection_name``,
        ``document_count`` (documents in the history now; None when it cannot be
        counted), ``redis_available`` and ``mongodb_available`` (that backend is in use
        and reachable), as the published AM-QADF names them.

        >>> storage = StreamStorage(path=":memory:")
        >>> _ = storage.store_batch([{"value": 1.0}, {"value": 2.0}])
        >>> s = storage.get_statistics()
        >>> s["document_count"], s["documents_inserted"], s["redis_available"]
        (2, 2, False)
        """
        stats = self.health()
        try:
            count: int | None = self.history.count()
        except Exception:  # statistics must not fail when the backend is down
            count = None
        stats.update(
            collection_name=self.collection_name,
            document_count=count,
            redis_available=stats["cache_backend"] == "redis" and stats["cache_ok"],
            mongodb_available=stats["history_backend"] == "mongodb" and stats["history_ok"],
        )
        return stats

    def health(self) -> dict[str, Any]:
        """Backends, their reachability, spool use and counters, for health views."""
        cache_backend = "redis" if self.redis is not None else "memory"
        if self.redis is not None and (self._cache_ok or time.monotonic() >= self._cache_retry_at):
            try:
                if not self.redis.ping():
                    raise ConnectionError("Redis PING returned no PONG")
            except Exception as exc:
                self._cache_failed(exc)
            else:
                self._cache_recovered()
        return {
            "cache_backend": cache_backend,
            "cache_ok": self._cache_ok,
            "history_backend": self.history.name,
            "history_location": str(getattr(self.history, "location", "") or ""),
            "history_ok": self._history_ok and self.history.ping(),
            "spooled": self._spooled,
            "spool_limit": self.spool_limit,
            **self.stats,
        }
