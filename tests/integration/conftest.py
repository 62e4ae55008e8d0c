"""Integration tests: every test here is marked ``integration``; the server fixtures
(``kafka_bootstrap``, ``redis_url``, ``mongo_uri``, ``services``, ``service_control``)
come from :mod:`tests.service_fixtures`; ``fleet`` (workers on those servers) is shared
by the fleet tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def fleet(kafka_bootstrap: str, redis_url: str, mongo_uri: str, tmp_path: Path) -> Iterator[Any]:
    """A :class:`tests.integration.test_fleet_workers.Fleet` on the real servers, closed
    after the test."""
    from tests.integration.test_fleet_workers import Fleet

    f = Fleet(kafka_bootstrap, redis_url, mongo_uri, tmp_path)
    try:
        yield f
    finally:
        f.close()
