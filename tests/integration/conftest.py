"""Integration tests: every test here is marked ``integration``; the server fixtures
(``kafka_bootstrap``, ``redis_url``, ``mongo_uri``, ``services``, ``service_control``)
come from :mod:`tests.service_fixtures`."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
