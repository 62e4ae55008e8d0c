"""Shared test setup: embedded storage goes to a temporary folder, never the home dir."""

import os
import tempfile

os.environ.setdefault("AMQADF_DATA_DIR", tempfile.mkdtemp(prefix="amqadf-test-"))
