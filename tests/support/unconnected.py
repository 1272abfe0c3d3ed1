"""Schedulers for the unit tier: built from a DSN that is never connected, so a test that
checks input validation proves the refusal came before anything touched the database."""

from __future__ import annotations

from typing import Any

from scheduler import Scheduler
from scheduler.postgres.owned_pool import DsnPool
from tests.support.db import FAST

#: A closed port: were a test to connect after all, it would fail loudly, not pass.
NEVER_CONNECTED_DSN = "postgresql://unused@127.0.0.1:1/unused"


def unconnected_scheduler(**overrides: Any) -> Scheduler:
    """A Scheduler with the integration tier's fast settings whose pool is never opened."""
    return Scheduler(NEVER_CONNECTED_DSN, **{**FAST, "schema": "unit_never_created", **overrides})


def assert_never_connected(scheduler: Scheduler) -> None:
    """The scheduler's DSN pool was never opened: nothing reached PostgreSQL."""
    pool = scheduler._pool  # private on purpose: what was opened
    assert isinstance(pool, DsnPool)
    assert pool._pool is None
