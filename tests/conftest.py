from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import settings

from scheduler import RetryBackoff, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support.db import FAST, TEST_DSN, unique_schema
from tests.support.pgbouncer import PgBouncer
from tests.support.processes import ThrowawayCluster


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(TEST_DSN, min_size=1, max_size=10)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def schema(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A fresh schema name per test; dropped afterwards."""
    name = unique_schema()
    try:
        yield name
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(name)} CASCADE")


# Property tests: 150 examples by default; HYPOTHESIS_PROFILE=thorough for a long hunt.
settings.register_profile("default", max_examples=150)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SchedulerFactory = Callable[..., Scheduler]


@pytest.fixture
async def make_scheduler(pool: asyncpg.Pool, schema: str) -> AsyncIterator[SchedulerFactory]:
    """Build schedulers on the test schema with fast timings; all are shut down after."""
    created: list[Scheduler] = []

    def factory(**overrides: Any) -> Scheduler:
        settings: dict[str, Any] = {**FAST, "schema": schema}
        settings["retry_backoff"] = RetryBackoff(base=0.05, maximum=0.2, jitter=False)
        settings.update(overrides)
        db_pool = settings.pop("db_pool", pool)
        scheduler = Scheduler(db_pool, **settings)
        created.append(scheduler)
        return scheduler

    try:
        yield factory
    finally:
        for scheduler in created:
            await scheduler.shutdown(grace=0)


@pytest.fixture
async def migrated(pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory) -> str:
    """The test schema with the scheduler tables in it."""
    await make_scheduler().migrate()
    return schema


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    """A private PostgreSQL server for tests that freeze, kill or restart the database."""
    cluster = ThrowawayCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    """A private PgBouncer in transaction mode in front of the test server."""
    bouncer = PgBouncer()
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
