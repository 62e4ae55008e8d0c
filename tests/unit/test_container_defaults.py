"""Secure defaults of the container setup, read from docker-compose.yml, the ports
override and the Dockerfile (no Docker engine needed), and of the command the image
runs (``dashboard.container``)."""

from __future__ import annotations

import json
import logging
import re
import stat
from pathlib import Path

import pytest
import yaml

from dashboard.container import GENERATED_USER, MIN_SECRET_CHARS, serve_command

ROOT = Path(__file__).resolve().parents[2]
BACKING = ("kafka", "redis", "mongo")
_VAR = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (``$$`` is ``$``)."""

    def one(m: re.Match) -> str:
        name, kind, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if kind == "-" else ""

    return _VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def test_backing_services_are_not_published_by_default():
    services = _compose()["services"]
    for name in BACKING:
        assert "ports" not in services[name], f"{name} is published to the host"


def test_dashboard_port_is_on_loopback_unless_asked():
    (port,) = _compose()["services"]["dashboard"]["ports"]
    assert _interpolate(port, {}).startswith("127.0.0.1:")
    assert _interpolate(port, {"AMQADF_BIND": "0.0.0.0"}).startswith("0.0.0.0:")


def test_redis_and_mongo_need_passwords_that_the_user_sets():
    services = _compose()["services"]
    redis, mongo, dash = services["redis"], services["mongo"], services["dashboard"]
    command = " ".join(redis["command"])
    # the password goes in with the configuration on stdin, not as an argument
    assert "requirepass" in command and "--requirepass" not in command
    assert "MONGO_INITDB_ROOT_PASSWORD" in mongo["environment"]
    for env in (redis["environment"], mongo["environment"], dash["environment"]):
        with pytest.raises(KeyError, match="make docker-env"):
            _interpolate(json.dumps(env), {})  # no default password: compose refuses
    secrets = {"AMQADF_REDIS_PASSWORD": "r-pw", "AMQADF_MONGO_PASSWORD": "m-pw"}
    dash_env = json.loads(_interpolate(json.dumps(dash["environment"]), secrets))
    assert dash_env["AMQADF_REDIS_URL"].startswith("redis://:r-pw@redis:")
    assert dash_env["AMQADF_MONGO_URI"].startswith("mongodb://amqadf:m-pw@mongo:")
    assert dash_env["AMQADF_PUBLIC_ORIGIN"] == "localhost:5006"


def test_opt_in_ports_are_loopback_only():
    override = _compose("docker-compose.ports.yml")["services"]
    assert set(override) == set(BACKING)
    for name, service in override.items():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)


def test_image_runs_the_guarded_command():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "allow-websocket-origin=*" not in dockerfile.replace(" ", "")
    cmd = [line for line in dockerfile.splitlines() if line.startswith("CMD")]
    assert cmd == ['CMD ["python", "-m", "dashboard.container"]']
    assert "redis://redis" not in dockerfile and "mongodb://mongo" not in dockerfile


def test_generated_log_in_and_secret(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    args, env = serve_command({"AMQADF_OPEN_ACCESS": "1"}, data_dir=tmp_path)
    users = tmp_path / "users.json"
    assert args[args.index("--basic-auth") + 1] == str(users)
    password = json.loads(users.read_text())[GENERATED_USER]
    assert len(password) >= 16
    for path in (users, tmp_path / "cookie_secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(env["PANEL_COOKIE_SECRET"]) >= MIN_SECRET_CHARS
    assert env["PANEL_COOKIE_SECRET"] not in args  # not on the command line
    assert env["AMQADF_OPERATORS"] == GENERATED_USER
    assert "AMQADF_OPEN_ACCESS" not in env, "a log-in is configured: access is never open"
    assert password not in caplog.text and str(users) in caplog.text
    assert args[args.index("--allow-websocket-origin") + 1] == "localhost:5006"
    # a restart keeps the log-in and the secret
    again_args, again_env = serve_command({}, data_dir=tmp_path)
    assert json.loads(users.read_text())[GENERATED_USER] == password
    assert again_env["PANEL_COOKIE_SECRET"] == env["PANEL_COOKIE_SECRET"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"AMQADF_PUBLIC_ORIGIN": "*"}, "wildcard"),
        ({"AMQADF_PUBLIC_ORIGIN": "*.plant.example:5006"}, "wildcard"),
        ({"AMQADF_PUBLIC_ORIGIN": " , "}, "wildcard"),
        ({"AMQADF_COOKIE_SECRET": "short"}, "at least"),
        ({"AMQADF_USERS_FILE": "/no/such/users.json"}, "not a readable JSON file"),
    ],
)
def test_unsafe_settings_are_refused(tmp_path, env, error):
    with pytest.raises(ValueError, match=error):
        serve_command(env, data_dir=tmp_path)


def test_own_users_file_and_origins(tmp_path):
    users = tmp_path / "mine.json"
    users.write_text(json.dumps({"ada": "pw-ada-123456"}))
    args, env = serve_command(
        {
            "AMQADF_USERS_FILE": str(users),
            "AMQADF_COOKIE_SECRET": "c" * 40,
            "AMQADF_PUBLIC_ORIGIN": "plant-pc:5006, plant-pc.local:5006",
            "AMQADF_OPERATORS": "ada",
        }
    )
    origins = [args[i + 1] for i, a in enumerate(args) if a == "--allow-websocket-origin"]
    assert origins == ["plant-pc:5006", "plant-pc.local:5006"]
    assert env["AMQADF_OPERATORS"] == "ada" and env["PANEL_COOKIE_SECRET"] == "c" * 40
    users.write_text("[]")
    with pytest.raises(ValueError, match="must map users to passwords"):
        serve_command({"AMQADF_USERS_FILE": str(users), "AMQADF_COOKIE_SECRET": "c" * 40})


def test_the_container_serves_the_machine_page_and_the_fleet_page(tmp_path) -> None:
    args, _env = serve_command({}, data_dir=tmp_path)
    assert args[:5] == ["panel", "serve", "dashboard/app.py", "dashboard/fleet.py", "--index"]
    assert args[5] == "app"  # / stays the machine page
