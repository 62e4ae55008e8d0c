"""Configuration of the streaming pipeline (spec fields plus a few deployment extras)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlparse

__all__ = ["StreamingConfig", "FIELD_NAME_PATTERN"]

#: Limits that ``from_env`` reads from ``AMQADF_<NAME>`` (upper case), e.g. AMQADF_MAX_SIGNALS.
_ENV_LIMITS = (
    "max_message_bytes",
    "max_fields",
    "max_field_name_length",
    "max_nesting_depth",
    "max_signals",
    "dead_letter_max_bytes",
    "query_max_rows",
)
_POSITIVE_INTS = (
    "auto_commit_interval_ms",
    "max_poll_records",
    "session_timeout_ms",
    "buffer_size",
    "processing_batch_size",
    "storage_batch_size",
    "spool_limit",
    *_ENV_LIMITS,
)
#: Default of ``field_name_pattern``: ASCII letters, digits, ``_`` and ``-``, not
#: starting with a digit or ``-`` (no ``$``, ``.``, NUL, markup or line breaks).
FIELD_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_\-]*"


@dataclass
class StreamingConfig:
    """Settings for :class:`StreamingClient` and friends.

    The first fields are the spec's, with its defaults. The extras: ``mongodb_uri``
    (None: embedded history file under ``storage_path``), ``auto_offset_reset``
    (where a new consumer group starts), ``kafka_config`` (extra librdkafka settings
    such as SASL/SSL), ``redis_username`` (an ACL user)/``redis_password``/``redis_ssl``,
    ``dead_letter_suffix`` and
    ``spool_limit`` (documents held while MongoDB is unreachable).

    Limits, because input is untrusted: ``max_message_bytes``, ``max_fields`` (keys per
    message, nested ones included), ``max_field_name_length`` and ``field_name_pattern``
    (every key must match it whole), ``max_nesting_depth``, ``max_signals`` (distinct
    numeric fields that get a buffer; later ones are counted, never kept),
    ``dead_letter_max_bytes`` (payload kept in a dead-letter copy), ``query_max_rows``
    and ``query_timeout_s`` (what one history query may return and take).

    >>> StreamingConfig().kafka_topic
    'am_qadf_monitoring'
    >>> StreamingConfig(buffer_size=0)
    Traceback (most recent call last):
    ...
    ValueError: StreamingConfig.buffer_size must be a positive int, got 0
    """

    kafka_bootstrap_servers: list[str] = field(default_factory=lambda: ["localhost:9092"])
    kafka_topic: str = "am_qadf_monitoring"
    consumer_group_id: str = "am_qadf_consumers"
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5000
    max_poll_records: int = 100
    session_timeout_ms: int = 30000
    buffer_size: int = 1000
    processing_batch_size: int = 100
    enable_redis_cache: bool = True
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    enable_mongodb_storage: bool = True
    storage_batch_size: int = 1000
    # -- extras beyond the spec ---------------------------------------------------------
    mongodb_uri: str | None = field(default=None, repr=False)
    storage_path: str | None = None
    auto_offset_reset: str = "earliest"
    kafka_config: dict[str, Any] = field(default_factory=dict, repr=False)
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_ssl: bool = False
    dead_letter_suffix: str = ".dlq"
    spool_limit: int = 200_000
    # -- limits on what one message and one stream may cost (input is untrusted) ---------
    max_message_bytes: int = 64 * 1024
    max_fields: int = 256
    max_field_name_length: int = 64
    field_name_pattern: str = FIELD_NAME_PATTERN
    max_nesting_depth: int = 8
    max_signals: int = 128
    dead_letter_max_bytes: int = 256 * 1024
    query_max_rows: int = 200_000
    query_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.kafka_bootstrap_servers, str):
            self.kafka_bootstrap_servers = [
                s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()
            ]
        if not self.kafka_bootstrap_servers:
            raise ValueError("StreamingConfig.kafka_bootstrap_servers must not be empty")
        for name in ("kafka_topic", "consumer_group_id", "redis_host"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"StreamingConfig.{name} must be a non-empty string, got {value!r}"
                )
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StreamingConfig.{name} must be a positive int, got {value!r}")
        if not (isinstance(self.redis_port, int) and 0 < self.redis_port < 65536):
            raise ValueError(
                f"StreamingConfig.redis_port must be 1..65535, got {self.redis_port!r}"
            )
        if not isinstance(self.redis_db, int) or self.redis_db < 0:
            raise ValueError(f"StreamingConfig.redis_db must be an int >= 0, got {self.redis_db!r}")
        if not isinstance(self.dead_letter_suffix, str) or not self.dead_letter_suffix:
            raise ValueError(
                "StreamingConfig.dead_letter_suffix must be a non-empty string "
                "(an empty one would send bad messages back to their own topic)"
            )
        try:
            re.compile(self.field_name_pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(
                f"StreamingConfig.field_name_pattern is not a regular expression: {exc}"
            ) from None
        qt = self.query_timeout_s
        if isinstance(qt, bool) or not isinstance(qt, int | float) or not 0 < qt < float("inf"):
            raise ValueError(
                f"StreamingConfig.query_timeout_s must be a positive finite number, got {qt!r}"
            )
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(
                "StreamingConfig.auto_offset_reset must be 'earliest' or 'latest', "
                f"got {self.auto_offset_reset!r}"
            )

    @classmethod
    def embedded(cls, **overrides: Any) -> StreamingConfig:
        """A configuration that needs no server: in-process broker, in-process cache,
        embedded history file.

        >>> StreamingConfig.embedded().kafka_bootstrap_servers
        ['memory://']
        """
        base: dict[str, Any] = {
            "kafka_bootstrap_servers": ["memory://"],
            "enable_redis_cache": False,
        }
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_env(
        cls, base: StreamingConfig | None = None, env: dict[str, str] | None = None
    ) -> StreamingConfig:
        """Read ``AMQADF_*`` variables over ``base`` (default: the spec defaults).

        ``AMQADF_KAFKA`` (comma-separated servers or ``memory://``), ``AMQADF_TOPIC``,
        ``AMQADF_GROUP``, ``AMQADF_REDIS_URL`` (``redis://[:password@]host:port/db``;
        ``none`` disables Redis), ``AMQADF_MONGO_URI`` (``none`` uses the embedded file),
        ``AMQADF_DATA_DIR``, ``AMQADF_KAFKA_SECURITY_PROTOCOL``, ``AMQADF_KAFKA_SASL_MECHANISM``,
        ``AMQADF_KAFKA_USERNAME``, ``AMQADF_KAFKA_PASSWORD``; the limits as
        ``AMQADF_MAX_MESSAGE_BYTES``, ``AMQADF_MAX_FIELDS``, ``AMQADF_MAX_FIELD_NAME_LENGTH``,
        ``AMQADF_FIELD_NAME_PATTERN``, ``AMQADF_MAX_NESTING_DEPTH``, ``AMQADF_MAX_SIGNALS``,
        ``AMQADF_DEAD_LETTER_MAX_BYTES``, ``AMQADF_QUERY_MAX_ROWS``, ``AMQADF_QUERY_TIMEOUT_S``.

        >>> StreamingConfig.from_env(env={"AMQADF_REDIS_URL": "redis://h:1234/2"}).redis_port
        1234
        >>> StreamingConfig.from_env(env={"AMQADF_MAX_SIGNALS": "32"}).max_signals
        32
        """
        env = dict(os.environ) if env is None else env
        cfg = base or cls()
        changes: dict[str, Any] = {}
        if env.get("AMQADF_KAFKA"):
            changes["kafka_bootstrap_servers"] = env["AMQADF_KAFKA"]
        if env.get("AMQADF_TOPIC"):
            changes["kafka_topic"] = env["AMQADF_TOPIC"]
        if env.get("AMQADF_GROUP"):
            changes["consumer_group_id"] = env["AMQADF_GROUP"]
        redis_url = env.get("AMQADF_REDIS_URL")
        if redis_url and redis_url.lower() == "none":
            changes["enable_redis_cache"] = False
        elif redis_url:
            u = urlparse(redis_url)
            try:
                port, db = u.port or 6379, int(u.path.strip("/") or 0)
            except ValueError as exc:
                raise ValueError(f"AMQADF_REDIS_URL: {exc}") from None
            if u.scheme not in ("redis", "rediss"):
                raise ValueError(
                    f"AMQADF_REDIS_URL must start with redis:// or rediss://, got {u.scheme!r}"
                )
            changes.update(
                enable_redis_cache=True,
                redis_host=u.hostname or "localhost",
                redis_port=port,
                redis_db=db,
                redis_username=u.username or None,
                redis_password=u.password,
                redis_ssl=u.scheme == "rediss",
            )
        mongo = env.get("AMQADF_MONGO_URI")
        if mongo and mongo.lower() == "none":
            changes["mongodb_uri"] = None
        elif mongo:
            changes["mongodb_uri"] = mongo
        for name in _ENV_LIMITS:
            if raw := env.get(f"AMQADF_{name.upper()}"):
                try:
                    changes[name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"AMQADF_{name.upper()} must be an integer, got {raw!r}"
                    ) from None
        if raw := env.get("AMQADF_QUERY_TIMEOUT_S"):
            try:
                changes["query_timeout_s"] = float(raw)
            except ValueError:
                raise ValueError(f"AMQADF_QUERY_TIMEOUT_S must be a number, got {raw!r}") from None
        if env.get("AMQADF_FIELD_NAME_PATTERN"):
            changes["field_name_pattern"] = env["AMQADF_FIELD_NAME_PATTERN"]
        if env.get("AMQADF_DATA_DIR"):
            changes["storage_path"] = env["AMQADF_DATA_DIR"]
        kafka_extra = dict(cfg.kafka_config)
        for var, key in (
            ("AMQADF_KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("AMQADF_KAFKA_SASL_MECHANISM", "sasl.mechanism"),
            ("AMQADF_KAFKA_USERNAME", "sasl.username"),
            ("AMQADF_KAFKA_PASSWORD", "sasl.password"),
            ("AMQADF_KAFKA_CA", "ssl.ca.location"),
        ):
            if env.get(var):
                kafka_extra[key] = env[var]
        if kafka_extra != cfg.kafka_config:
            changes["kafka_config"] = kafka_extra
        return replace(cfg, **changes)

    def describe(self) -> dict[str, Any]:
        """Settings safe to show or log: passwords and SASL secrets are masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "redis_password":
                value = "***" if value else None
            elif f.name == "kafka_config":
                value = {
                    k: ("***" if "password" in k or "secret" in k else v) for k, v in value.items()
                }
            elif f.name == "mongodb_uri" and value:
                u = urlparse(value)
                if u.password:
                    value = value.replace(f":{u.password}@", ":***@")
            out[f.name] = value
        return out
