"""SQLAlchemy, psycopg and Django are optional: the core recognises their connections
without importing them, and refuses what it does not know with what to pass instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scheduler import ConfigurationError, SyncProducer
from tests.support.processes import ROOT

WITHOUT_EXTRAS = """
import sys
for name in ("sqlalchemy", "psycopg", "django"):
    sys.modules[name] = None  # as if not installed
import scheduler, scheduler.connections, scheduler.sync, scheduler.testing
print("imported")
"""


def test_the_core_imports_without_the_stack_extras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_a_sync_producer_refuses_an_unknown_connection_before_writing() -> None:
    with pytest.raises(
        ConfigurationError, match="pass a psycopg 3 Connection, a SQLAlchemy Session"
    ):
        SyncProducer(schema="anything").schedule(object(), "tasks:send")
