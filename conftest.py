"""Shared test setup: embedded storage goes to a temporary folder, never the home dir;
the real-server fixtures serve every test folder (browser tests use Kafka too)."""

import os
import tempfile

os.environ.setdefault("AMQADF_DATA_DIR", tempfile.mkdtemp(prefix="amqadf-test-"))

pytest_plugins = ["tests.service_fixtures"]
