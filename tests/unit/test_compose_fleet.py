"""The fleet as docker-compose.yml starts it, checked without a Docker engine: the
services, each container's command line parsed by our own ``am-qadf`` argparse, the
environment (only variables we read), and nothing but the dashboard published."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from am_qadf import cli
from dashboard.container import METRICS_PLUGIN, serve_command

from .test_container_defaults import _interpolate

ROOT = Path(__file__).resolve().parents[2]
BACKING = {"kafka", "redis", "mongo"}
WORKERS = ("worker-1", "worker-2")
SECRETS = {"AMQADF_REDIS_PASSWORD": "r-pw", "AMQADF_MONGO_PASSWORD": "m-pw"}


def _services(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))["services"]


def _env(service: dict[str, Any], values: dict[str, str] = SECRETS) -> dict[str, str]:
    """A service's environment with compose's ``${VAR…}`` interpolated from ``values``."""
    return json.loads(_interpolate(json.dumps(service.get("environment") or {}), values))


def _parsed(command: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """``command`` (``am-qadf …``) parsed by the real ``am-qadf`` parser; the command's
    function is replaced so nothing runs."""
    assert command[0] == "am-qadf", command
    seen: list[argparse.Namespace] = []
    for name in ("_run_worker", "_simulate"):
        monkeypatch.setattr(cli, name, lambda args: seen.append(args) or 0)
    assert cli.main([str(a) for a in command[1:]]) == 0
    (args,) = seen
    return args


def _read_variables() -> set[str]:
    """Every ``AMQADF_*`` name the library or the dashboard mentions in its code."""
    names: set[str] = set()
    for folder in ("am_qadf", "dashboard"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"AMQADF_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return names


def test_the_fleet_services_are_all_there() -> None:
    services = _services()
    assert set(services) == BACKING | {*WORKERS, "simulator", "dashboard"}


def test_two_workers_in_one_group_share_the_topic_the_simulator_feeds(monkeypatch) -> None:
    services = _services()
    workers = [_parsed(services[w]["command"], monkeypatch) for w in WORKERS]
    sim = _parsed(services["simulator"]["command"], monkeypatch)
    assert {w.command for w in workers} == {"worker"} and sim.command == "simulate"
    assert workers[0].group == workers[1].group and workers[0].group
    assert workers[0].id != workers[1].id
    assert {w.topic for w in workers} == {sim.topic}
    assert {w.bootstrap for w in workers} == {sim.bootstrap} == {"kafka:29092"}
    assert sim.machines == 4 and sim.builds > 1  # a fleet, build after build
    for w in workers:
        assert w.metrics_port > 0  # /metrics for Prometheus (on the compose network)


def test_workers_keep_state_in_redis_and_history_in_mongodb() -> None:
    services = _services()
    for name in WORKERS:
        env = _env(services[name])
        assert env["AMQADF_STATE"] == "redis://:r-pw@redis:6379/0"
        assert env["AMQADF_MONGO_URI"].startswith("mongodb://amqadf:m-pw@mongo:27017/")
        with pytest.raises(KeyError, match="make docker-env"):
            _env(services[name], {})  # no default password: compose refuses to start


def test_the_dashboard_reads_state_only_and_serves_metrics(tmp_path: Path) -> None:
    dash = _services()["dashboard"]
    assert "command" not in dash  # the image's guarded command (dashboard.container)
    env = _env(dash)
    assert env["AMQADF_STATE"] == "redis://:r-pw@redis:6379/0"
    assert env["AMQADF_SIMULATE"] == "0"
    assert "AMQADF_TOPIC" not in env  # it consumes no fleet messages itself
    env["AMQADF_DATA_DIR"] = str(tmp_path)
    args, _ = serve_command(env)
    assert "dashboard/app.py" in args
    assert args[args.index("--plugins") + 1] == METRICS_PLUGIN


def test_only_the_dashboard_is_published_and_on_loopback() -> None:
    for name, service in _services().items():
        if name == "dashboard":
            (port,) = service["ports"]
            assert _interpolate(port, {}).startswith("127.0.0.1:")
        else:
            assert "ports" not in service, f"{name} is published to the host"
    override = _services("docker-compose.ports.yml")
    assert set(override) == BACKING  # the opt-in ports are the servers', loopback only
    for name, service in override.items():
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), name


def test_every_variable_given_to_our_containers_is_one_we_read() -> None:
    read = _read_variables()
    assert "AMQADF_STATE" in read and "AMQADF_MONGO_URI" in read  # the scan works
    for name, service in _services().items():
        if name in BACKING:
            continue
        unknown = {k for k in _env(service) if k.startswith("AMQADF_")} - read
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
