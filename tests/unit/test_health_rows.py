"""The Health tab's connection rows name what a down cache costs."""

from am_qadf.machine_view import HealthReport
from dashboard.health_view import connection_rows


def _cache_row(storage: dict) -> dict[str, str]:
    health = {"broker": "kafka", "consumer_state": "running", "storage": storage}
    rows = connection_rows(HealthReport.from_mapping(health))
    return next(r for r in rows if r["system"] == "Redis")


def test_the_cache_row_counts_calls_skipped_while_redis_is_down() -> None:
    storage = {"cache_backend": "redis", "cache_ok": False, "cache_writes": 10}
    down = _cache_row({**storage, "cache_failures": 3, "cache_skipped": 1200})
    assert down["state"] == "down"
    assert "3 failures, 1,200 skipped while down" in down["detail"]
    assert "skipped" not in _cache_row({**storage, "cache_ok": True})["detail"]
