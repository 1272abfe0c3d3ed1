"""PgBouncer in transaction mode as a supported deployment (a real pgbouncer, started by the
`pgbouncer` fixture in front of the test server): a statement cache that cannot work is
refused at start(), wake-ups survive pooling with listen_dsn, and without it a replica
says so once and polls every second."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from scheduler import JobRequest, StatementCacheError
from scheduler.models import SchedulerState
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, holds, unique_schema, wait_until
from tests.support.pgbouncer import PgBouncer

#: No poll would find a job within a test's deadline: only a wake-up (or the one-second
#: poll of a replica that hears no notifications) starts it.
NO_POLLING = {"poll_interval": 3600.0}
UNHEARD = "notifications do not reach this replica's listener"


@pytest.fixture
async def bounced_pool(pgbouncer: PgBouncer) -> AsyncIterator[asyncpg.Pool]:
    """A pool through PgBouncer, configured as docs/scale.md says."""
    pool = await asyncpg.create_pool(pgbouncer.dsn, min_size=1, max_size=6, statement_cache_size=0)
    try:
        yield pool
    finally:
        await pool.close()


def unheard_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and UNHEARD in record.getMessage()
    ]


async def test_a_statement_cache_that_cannot_work_through_the_pooler_is_refused_at_start(
    pgbouncer: PgBouncer, schema: str, make_scheduler: SchedulerFactory
) -> None:
    pool = await asyncpg.create_pool(pgbouncer.dsn, min_size=1, max_size=4)  # the default cache
    scheduler = make_scheduler(db_pool=pool, listen_dsn=TEST_DSN)
    try:
        with pytest.raises(StatementCacheError, match="statement_cache_size=0") as refused:
            await scheduler.start()
        assert "max_prepared_statements" in str(refused.value)
        assert scheduler.state is SchedulerState.STOPPED
        # Refused before anything was written: not even the schema was created.
        exists = await pool.fetchval("SELECT to_regnamespace($1) IS NOT NULL", schema)
        assert exists is False
    finally:
        await scheduler.shutdown(grace=0)  # had it started, closing its pool would hang
        await pool.close()


async def test_without_the_statement_cache_every_job_runs_once_through_pgbouncer(
    bounced_pool: asyncpg.Pool, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    # A lease of 10 s: with the suite's 2 s, a heartbeat queued behind the pooler's few
    # server connections on a loaded machine can miss its fence, and a fenced job's rerun
    # is correct but is not what this test is about (the statement cache).
    worker = make_scheduler(
        db_pool=bounced_pool, listen_dsn=TEST_DSN, lease_time=10.0, heartbeat_interval=1.0
    )
    async with worker:
        ids = await worker.schedule_many(JobRequest(jobs.record, args=(key,)) for _ in range(50))
        await wait_until(lambda: holds(len(jobs.calls(key)) >= len(ids)), timeout=30)
        for job_id in ids:
            job = await worker.get_job(job_id)
            assert job is not None and job.attempts == 1, job
    assert len(jobs.calls(key)) == len(ids)


async def test_with_listen_dsn_jobs_start_on_a_wake_up_through_pgbouncer(
    bounced_pool: asyncpg.Pool, make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    key = unique_schema("k")
    caplog.set_level(logging.WARNING, logger="scheduler")
    async with make_scheduler(
        db_pool=bounced_pool, listen_dsn=TEST_DSN, tasks=[jobs.record], **NO_POLLING
    ) as worker:
        listener = worker._started().listener
        assert listener is not None
        # The listener checked that its own notification reaches it.
        await wait_until(lambda: holds(listener.hears_itself is not None), timeout=10)
        assert listener.hears_itself is True
        producer = make_scheduler(db_pool=bounced_pool)
        for _ in range(5):
            await producer.schedule(jobs.record, args=(key,))
        await wait_until(lambda: holds(len(jobs.calls(key)) == 5), timeout=10)
    assert unheard_warnings(caplog) == []


async def test_without_listen_dsn_a_replica_says_so_once_and_polls_every_second(
    bounced_pool: asyncpg.Pool, make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    key = unique_schema("k")
    caplog.set_level(logging.WARNING, logger="scheduler")
    # No health check within the test either: its round trips through PgBouncer can pick up
    # a notification by chance (a server session hands what it holds to whoever is next).
    async with make_scheduler(
        db_pool=bounced_pool,
        tasks=[jobs.record],
        listener_check_interval=3600.0,
        **NO_POLLING,
    ) as worker:
        await wait_until(lambda: holds(unheard_warnings(caplog)), timeout=15)
        listener = worker._started().listener
        assert listener is not None and listener.hears_itself is False
        producer = make_scheduler(db_pool=bounced_pool)
        for _ in range(3):
            await producer.schedule(jobs.record, args=(key,))
        # Lost notifications, an hour-long poll_interval: the one-second poll finds them.
        await wait_until(lambda: holds(len(jobs.calls(key)) == 3), timeout=15)
    warnings = unheard_warnings(caplog)
    assert len(warnings) == 1
    assert "listen_dsn" in warnings[0].getMessage()
