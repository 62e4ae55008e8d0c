"""Fixtures for tests against real Kafka, Redis and MongoDB-wire servers (integration
tests, and browser tests that feed a dashboard through a real broker); loaded for the
whole suite by the root ``conftest.py``.

Where the servers come from:

* ``AMQADF_KAFKA`` (bootstrap servers), ``AMQADF_REDIS_URL`` and ``AMQADF_MONGO_URI``
  point at servers someone else runs; each one that is set is used as is.
* Every service not given that way is started once per session with
  ``services/run start NAME ...`` (Kafka KRaft node, redis-server, FerretDB on
  127.0.0.1; ports from ``AMQADF_KAFKA_PORT`` / ``AMQADF_REDIS_PORT`` /
  ``AMQADF_MONGO_PORT``).

A server that cannot be reached skips the tests that need it, or fails them when
``AMQADF_REQUIRE_SERVICES=1`` (CI sets this so a broken service is never silent).
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES_RUN = REPO_ROOT / "services" / "run"

SERVICE_NAMES = ("kafka", "redis", "mongo")
ENV_VARS = {"kafka": "AMQADF_KAFKA", "redis": "AMQADF_REDIS_URL", "mongo": "AMQADF_MONGO_URI"}

# A cold start resolves Kafka jars and builds FerretDB; later starts take seconds.
START_TIMEOUT_S = 15 * 60
CONTROL_TIMEOUT_S = 5 * 60


def _services_required() -> bool:
    return os.environ.get("AMQADF_REQUIRE_SERVICES") == "1"


def _unavailable(reason: str) -> None:
    if _services_required():
        pytest.fail(f"{reason} (AMQADF_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def _local_endpoints() -> dict[str, str]:
    kafka_port = os.environ.get("AMQADF_KAFKA_PORT", "9092")
    redis_port = os.environ.get("AMQADF_REDIS_PORT", "6379")
    mongo_port = os.environ.get("AMQADF_MONGO_PORT", "27017")
    return {
        "kafka": f"127.0.0.1:{kafka_port}",
        "redis": f"redis://127.0.0.1:{redis_port}/0",
        "mongo": f"mongodb://127.0.0.1:{mongo_port}/am_qadf_test",
    }


def _run_services(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES_RUN), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------ probes


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or "]" in port:  # no port given (or a bare IPv6 literal)
        return address.strip().strip("[]"), default_port
    return host.strip("[]"), int(port)


def _tcp_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_kafka(bootstrap: str) -> str | None:
    if not _tcp_reachable(*_host_port(bootstrap.split(",")[0], default_port=9092)):
        return f"Kafka at {bootstrap} refuses connections"
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    except Exception as exc:  # KafkaException carries the librdkafka error
        return f"Kafka at {bootstrap} answers no metadata request: {exc}"
    return None


def _probe_redis(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"Redis at {url} does not answer PING: {exc}"
    return None


def _probe_mongo(uri: str) -> str | None:
    import pymongo
    import pymongo.errors

    hosts = urlsplit(uri).netloc.rpartition("@")[2].split(",")
    if not uri.startswith("mongodb+srv:") and not any(
        _tcp_reachable(*_host_port(h, default_port=27017)) for h in hosts
    ):
        return f"MongoDB-wire server at {_redact(uri)} refuses connections"

    try:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
            client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        return f"MongoDB-wire server at {_redact(uri)} does not answer ping: {exc}"
    return None


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(parts.password, "***")
    return uri


PROBES: dict[str, Callable[[str], str | None]] = {
    "kafka": _probe_kafka,
    "redis": _probe_redis,
    "mongo": _probe_mongo,
}


# ------------------------------------------------------------------ session state


@dataclass
class Services:
    """Endpoints of the servers for this session, and which of them are usable."""

    endpoints: dict[str, str]
    managed: frozenset[str]  # started by services/run in this session
    problems: dict[str, str] = field(default_factory=dict)

    def require(self, name: str) -> str:
        if name in self.problems:
            _unavailable(self.problems[name])
        return self.endpoints[name]

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoints["kafka"]

    @property
    def redis_url(self) -> str:
        return self.endpoints["redis"]

    @property
    def mongo_uri(self) -> str:
        return self.endpoints["mongo"]


@pytest.fixture(scope="session")
def _service_session() -> Services:
    endpoints = _local_endpoints()
    from_env = {name for name in SERVICE_NAMES if os.environ.get(ENV_VARS[name])}
    for name in from_env:
        endpoints[name] = os.environ[ENV_VARS[name]]
    managed = [name for name in SERVICE_NAMES if name not in from_env]

    problems: dict[str, str] = {}
    if managed:
        try:
            result = _run_services("start", *managed, timeout=START_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            for name in managed:
                problems[name] = f"services/run start failed: {exc}"
        else:
            if result.returncode != 0:
                log = _tail(result.stderr + result.stdout)
                for name in managed:
                    problems[name] = f"services/run start exited {result.returncode}:\n{log}"

    for name in SERVICE_NAMES:
        if name not in problems:
            problem = PROBES[name](endpoints[name])
            if problem:
                problems[name] = problem

    return Services(endpoints=endpoints, managed=frozenset(managed), problems=problems)


@pytest.fixture(scope="session")
def services(_service_session: Services) -> Services:
    """All three servers, up; skips (or fails) when any one is unreachable."""
    for name in SERVICE_NAMES:
        _service_session.require(name)
    return _service_session


@pytest.fixture(scope="session")
def kafka_bootstrap(_service_session: Services) -> str:
    """Bootstrap servers of a reachable Kafka broker, e.g. ``127.0.0.1:9092``."""
    return _service_session.require("kafka")


@pytest.fixture(scope="session")
def redis_url(_service_session: Services) -> str:
    """URL of a reachable Redis, e.g. ``redis://127.0.0.1:6379/0``."""
    return _service_session.require("redis")


@pytest.fixture(scope="session")
def mongo_uri(_service_session: Services) -> str:
    """URI (with database) of a MongoDB-wire server, e.g. ``mongodb://127.0.0.1:27017/am_qadf_test``."""
    return _service_session.require("mongo")


@pytest.fixture
def unique_topic() -> str:
    """A Kafka topic name no other test uses (the broker auto-creates it, 3 partitions)."""
    return f"it-{uuid.uuid4().hex}"


class ServiceControl:
    """Stops and starts the servers that services/run started, for fault tests."""

    def __init__(self, session: Services) -> None:
        self._session = session
        self.stopped: set[str] = set()

    def _check(self, name: str) -> None:
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r}; expected one of {SERVICE_NAMES}")
        if name not in self._session.managed:
            pytest.skip(f"{name} comes from {ENV_VARS[name]}; services/run cannot control it")

    def _run(self, action: str, name: str) -> None:
        result = _run_services(action, name, timeout=CONTROL_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(
                f"services/run {action} {name} exited {result.returncode}:\n"
                f"{_tail(result.stderr + result.stdout)}"
            )

    def stop(self, name: str) -> None:
        """Stop NAME (kafka, redis or mongo); its data is kept."""
        self._check(name)
        self.stopped.add(name)
        self._run("stop", name)

    def start(self, name: str) -> None:
        """Start NAME again and wait until it serves requests."""
        self._check(name)
        self._run("start", name)
        self.stopped.discard(name)

    def is_up(self, name: str) -> bool:
        return PROBES[name](self._session.endpoints[name]) is None


@pytest.fixture
def service_control(_service_session: Services) -> Iterator[ServiceControl]:
    """Stop/start servers mid-test; anything left stopped is started again afterwards."""
    control = ServiceControl(_service_session)
    yield control
    for name in sorted(control.stopped):
        control.start(name)
