"""``python -m dashboard.container``: the dashboard as the container image serves it,
with a log-in required and the websocket open to the configured origin only.

The image is meant for a plant network, so nothing is open by default:

* **Log-in** through Panel's basic auth. ``AMQADF_USERS_FILE`` names a JSON file of
  ``{"user": "password"}``; without one, a file with the user ``operator`` and a
  random password is generated once in ``AMQADF_DATA_DIR`` (a volume) and its path
  is logged (the password never is). ``AMQADF_OPERATORS`` says who may operate
  (default: the generated user; every other user is a viewer).
* **Cookie secret** from ``AMQADF_COOKIE_SECRET``, else generated once and kept in
  the same folder (mode 600), so log-ins survive a restart.
* **Websocket origin**: ``AMQADF_PUBLIC_ORIGIN``, the ``host:port`` (comma-separated
  for several) browsers use to reach the dashboard; default ``localhost:5006``.
  ``*`` is refused: any web page a plant user opened could otherwise drive the page.

The cookie secret reaches ``panel serve`` through its environment
(``PANEL_COOKIE_SECRET``), not its command line, so ``ps`` does not show it; the users
file is named on the command line (it holds the passwords, its name does not).

>>> import json, tempfile
>>> users = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
>>> _ = users.write(json.dumps({"ada": "a-long-password"})); users.close()
>>> args, env = serve_command(
...     {"AMQADF_USERS_FILE": users.name, "AMQADF_COOKIE_SECRET": "s" * 32,
...      "AMQADF_PUBLIC_ORIGIN": "plant-pc:5006"})
>>> args[-4:] == ["--basic-auth", users.name, "--allow-websocket-origin", "plant-pc:5006"]
True
>>> env["PANEL_COOKIE_SECRET"] == "s" * 32
True
>>> os.unlink(users.name)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path

__all__ = ["GENERATED_USER", "METRICS_PLUGIN", "MIN_SECRET_CHARS", "PAGES", "main", "serve_command"]

log = logging.getLogger(__name__)

#: The user of a generated users file (an operator unless AMQADF_OPERATORS says else).
GENERATED_USER = "operator"

#: Shortest cookie secret accepted (a guessable secret lets anyone forge a log-in).
MIN_SECRET_CHARS = 32

_DEFAULT_ORIGIN = "localhost:5006"

#: ``panel serve --plugins`` module that adds ``/metrics`` (see dashboard.metrics_plugin).
METRICS_PLUGIN = "dashboard.metrics_plugin"
_ROOT = Path(__file__).resolve().parent.parent
#: The page scripts served, those present (the fleet page comes with the fleet).
PAGES = ("dashboard/app.py", "dashboard/fleet.py")


def _pages() -> list[str]:
    return [p for p in PAGES if (_ROOT / p).exists()]


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _users_file(env: dict[str, str], data_dir: Path | None) -> tuple[str, bool]:
    """The users file and whether it was generated here."""
    given = env.get("AMQADF_USERS_FILE", "").strip()
    if given:
        try:
            users = json.loads(Path(given).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"AMQADF_USERS_FILE {given!r} is not a readable JSON file: {exc}"
            ) from None
        if not isinstance(users, dict) or not users:
            raise ValueError(
                f'AMQADF_USERS_FILE {given!r} must map users to passwords: {{"ada": "..."}}'
            )
        return given, False
    if data_dir is None:
        raise ValueError("set AMQADF_USERS_FILE, or AMQADF_DATA_DIR for a generated log-in")
    path = data_dir / "users.json"
    if not path.exists():
        _private_file(path, json.dumps({GENERATED_USER: secrets.token_urlsafe(18)}))
        log.warning(
            "generated a log-in: user %r, password in %s (read it with `docker compose exec "
            "dashboard cat %s`)",
            GENERATED_USER,
            path,
            path,
        )
    return str(path), True


def _cookie_secret(env: dict[str, str], data_dir: Path | None) -> str:
    secret = env.get("AMQADF_COOKIE_SECRET", "").strip()
    if not secret:
        if data_dir is None:
            raise ValueError("set AMQADF_COOKIE_SECRET, or AMQADF_DATA_DIR to keep a generated one")
        path = data_dir / "cookie_secret"
        if not path.exists():
            _private_file(path, secrets.token_urlsafe(48))
        secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"the cookie secret must have at least {MIN_SECRET_CHARS} characters")
    return secret


def _origins(env: dict[str, str]) -> list[str]:
    origins = [o.strip() for o in env.get("AMQADF_PUBLIC_ORIGIN", _DEFAULT_ORIGIN).split(",")]
    origins = [o for o in origins if o]
    if not origins or any("*" in o for o in origins):
        raise ValueError(
            "AMQADF_PUBLIC_ORIGIN must name the host:port browsers use (e.g. plant-pc:5006), "
            f"not a wildcard; got {env.get('AMQADF_PUBLIC_ORIGIN')!r}"
        )
    return origins


def serve_command(
    env: dict[str, str] | None = None, data_dir: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The ``panel serve`` command line and environment for the container, from ``env``
    (default ``os.environ``). Raises ``ValueError`` naming the setting that is missing
    or unsafe (a wildcard origin, a short cookie secret, an unreadable users file)."""
    env = dict(os.environ) if env is None else dict(env)
    if data_dir is None and env.get("AMQADF_DATA_DIR"):
        data_dir = Path(env["AMQADF_DATA_DIR"])
    users, generated = _users_file(env, data_dir)
    out = {**env, "PANEL_COOKIE_SECRET": _cookie_secret(env, data_dir)}
    if generated and not env.get("AMQADF_OPERATORS"):
        out["AMQADF_OPERATORS"] = GENERATED_USER
    # the log-in comes from the arguments below; these would open access or clash
    for var in ("AMQADF_OPEN_ACCESS", "PANEL_BASIC_AUTH", "BOKEH_ALLOW_WS_ORIGIN"):
        out.pop(var, None)
    port = env.get("AMQADF_PORT", "5006")
    # /app (one machine), /fleet (every machine); / is /app, as with one page served
    args = ["panel", "serve", *_pages(), "--index", "app", "--address", "0.0.0.0", "--port", port]
    args += ["--plugins", METRICS_PLUGIN]
    args += ["--basic-auth", users]
    for origin in _origins(env):
        args += ["--allow-websocket-origin", origin]
    return args, out


def main() -> None:  # pragma: no cover - replaces the process
    """Check the settings and replace this process with ``panel serve``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args, env = serve_command()
    except ValueError as exc:
        sys.exit(f"am-qadf dashboard: {exc}")
    os.execvpe(args[0], args, env)


if __name__ == "__main__":  # pragma: no cover
    main()
