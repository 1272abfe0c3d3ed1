"""A poll-only replica (`listen=False`) on a pool of ONE connection (issue 21, item 2): it
claims, runs, heartbeats, writes outcomes and sweeps on that one connection, takes turns
without deadlock, and keeps its guarantees (leases, heartbeats, the fence)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from scheduler import ConfigurationError, JobStatus, StatementCacheError
from scheduler.models import SchedulerState
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, unique_schema, wait_until
from tests.support.pgbouncer import PgBouncer

#: Every housekeeping pass as often as the suite's fast heartbeat, so they all compete for
#: the one connection with the claims and outcome writes.
BUSY_HOUSEKEEPING: dict[str, Any] = {"prune_interval": 0.3, "reap_interval": 0.3}


@pytest.fixture
async def single_pool() -> AsyncIterator[asyncpg.Pool]:
    name = unique_schema("single")
    pool = await asyncpg.create_pool(
        TEST_DSN, min_size=0, max_size=1, server_settings={"application_name": name}
    )
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


async def _statuses(pool: asyncpg.Pool, schema: str) -> dict[str, int]:
    rows = await pool.fetch(
        f"SELECT status, count(*) AS n FROM {quote_identifier(schema)}.jobs GROUP BY status"
    )
    return {row["status"]: row["n"] for row in rows}


async def test_a_poll_only_replica_on_a_pool_of_one_drains_every_job_once(
    pool: asyncpg.Pool,
    migrated: str,
    single_pool: asyncpg.Pool,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = unique_schema("drain")
    producer = make_scheduler()
    replica = make_scheduler(
        db_pool=single_pool,
        listen=False,
        max_concurrent_jobs=10,
        tasks=[jobs.record],
        **BUSY_HOUSEKEEPING,
    )
    async with replica:
        assert replica._started().listener is None  # no LISTEN connection at all
        ids = [await producer.schedule(jobs.record, args=(key, i)) for i in range(300)]

        async def drained() -> bool:
            return (await _statuses(pool, migrated)).get("succeeded") == len(ids)

        await wait_until(drained, timeout=60, message="the 300 jobs to succeed")
        # Work scheduled after the drain, with nothing to wake the replica but its poll.
        late = await producer.schedule(jobs.record, args=(key, "late"))
        job = await replica.wait_for_job(late, timeout=30)
        assert job.status is JobStatus.SUCCEEDED
    calls = [call["job_id"] for call in jobs.CALLS[key]]
    assert sorted(calls) == sorted([*ids, late])  # every job ran, and only once
    q = quote_identifier(migrated)
    assert await pool.fetchval(f"SELECT max(attempts) FROM {q}.jobs") == 1
    assert (
        await pool.fetchval(f"SELECT count(*) - count(DISTINCT job_id) FROM {q}.job_attempts") == 0
    )
    assert replica.state is SchedulerState.STOPPED
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("scheduler")
    ]
    assert problems == []  # no failed heartbeat, claim or outcome write, no fence


async def test_a_long_job_keeps_its_lease_on_a_pool_of_one_while_others_run(
    pool: asyncpg.Pool,
    migrated: str,
    single_pool: asyncpg.Pool,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job three lease times long, beside a stream of quick jobs competing for the one
    connection: it is never reclaimed, because the heartbeat gets its turn in time."""
    key = unique_schema("long")
    producer = make_scheduler()
    replica = make_scheduler(
        db_pool=single_pool,
        listen=False,
        max_concurrent_jobs=4,
        tasks=[jobs.sleep_then_record, jobs.record],
        **BUSY_HOUSEKEEPING,
    )
    q = quote_identifier(migrated)
    async with replica:
        long_id = await producer.schedule(jobs.sleep_then_record, args=(key, 6.0))

        async def started() -> bool:
            return any(call["event"] == "started" for call in jobs.CALLS[key])

        await wait_until(started, timeout=10, message="the long job to start")
        beats = [await pool.fetchval(f"SELECT max(lease_expires_at) FROM {q}.workers")]
        quick = []
        for i in range(40):
            quick.append(await producer.schedule(jobs.record, args=(key + "q", i)))
            await anyio.sleep(0.1)
            beats.append(await pool.fetchval(f"SELECT max(lease_expires_at) FROM {q}.workers"))
        job = await replica.wait_for_job(long_id, timeout=30)
        for job_id in quick:
            assert (await replica.wait_for_job(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert [c["event"] for c in jobs.CALLS[key]] == ["started", "finished"]
    assert len(set(beats)) > 5  # the lease moved on, beat after beat, while the job ran
    assert not [r for r in caplog.records if "fenced itself" in r.getMessage()]
    assert not [r for r in caplog.records if "lease lost" in r.getMessage()]


async def test_cancel_requests_reach_a_poll_only_replica_with_its_heartbeat(
    migrated: str, single_pool: asyncpg.Pool, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("cancel")
    producer = make_scheduler()
    replica = make_scheduler(db_pool=single_pool, listen=False, tasks=[jobs.wait_forever])
    async with replica:
        job_id = await producer.schedule(jobs.wait_forever, args=(key,))

        async def started() -> bool:
            return bool(jobs.CALLS[key])

        await wait_until(started, timeout=10, message="the job to start")
        await producer.cancel_job(job_id)
        job = await producer.wait_for_job(job_id, timeout=10)
    assert job.status is JobStatus.CANCELLED
    assert [c["event"] for c in jobs.CALLS[key]] == ["started", "interrupted"]


async def test_the_application_holding_the_only_connection_fences_the_replica_not_hangs_it(
    migrated: str,
    single_pool: asyncpg.Pool,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every wait has a deadline: a heartbeat that cannot get the connection before the
    fence time fences the replica (its job is cancelled, never run twice at once); once
    the connection is free it carries on under a new identity and the job runs again."""
    key = unique_schema("held")
    producer = make_scheduler()
    replica = make_scheduler(
        db_pool=single_pool, listen=False, orphan_retries=5, tasks=[jobs.wait_forever]
    )
    async with replica:
        job_id = await producer.schedule(jobs.wait_forever, args=(key,))
        await wait_until(lambda: _async_true(bool(jobs.CALLS[key])), timeout=10)
        with anyio.fail_after(20):
            async with single_pool.acquire():  # the application takes the only connection
                await wait_until(
                    lambda: _async_true(any(c["event"] == "interrupted" for c in jobs.CALLS[key])),
                    timeout=15,
                    message="the fence to cancel the job",
                )
        # The connection is back: the replica re-registers and a new attempt starts.
        await wait_until(
            lambda: _async_true(len([c for c in jobs.CALLS[key] if c["event"] == "started"]) == 2),
            timeout=30,
            message="the job's next attempt",
        )
        await producer.cancel_job(job_id)
    assert any("fenced itself" in r.getMessage() for r in caplog.records)
    starts = [c["attempt"] for c in jobs.CALLS[key] if c["event"] == "started"]
    assert starts == [1, 2]


async def _async_true(value: bool) -> bool:
    return value


async def test_a_listening_replica_still_refuses_a_pool_of_one_and_names_the_way_out(
    migrated: str, single_pool: asyncpg.Pool, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(db_pool=single_pool, tasks=[jobs.record])
    with anyio.fail_after(10), pytest.raises(ConfigurationError, match="listen=False"):
        await scheduler.start()
    assert scheduler.state is SchedulerState.NEW


async def test_behind_pgbouncer_a_pool_of_one_with_the_statement_cache_on_is_refused(
    pgbouncer: PgBouncer, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    cached = await asyncpg.create_pool(pgbouncer.dsn, min_size=0, max_size=1)
    try:
        scheduler = make_scheduler(db_pool=cached, listen=False, tasks=[jobs.record])
        with pytest.raises(StatementCacheError, match="statement_cache_size=0"):
            await scheduler.start()
        assert scheduler.state is SchedulerState.STOPPED
    finally:
        await cached.close()


async def test_behind_pgbouncer_a_poll_only_pool_of_one_runs_every_job_once(
    pgbouncer: PgBouncer, pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("bounced")
    bounced = await asyncpg.create_pool(
        pgbouncer.dsn, min_size=0, max_size=1, statement_cache_size=0
    )
    try:
        producer = make_scheduler()
        ids = [await producer.schedule(jobs.record, args=(key, i)) for i in range(100)]
        async with make_scheduler(
            db_pool=bounced, listen=False, tasks=[jobs.record], **BUSY_HOUSEKEEPING
        ):

            async def drained() -> bool:
                return (await _statuses(pool, migrated)).get("succeeded") == len(ids)

            await wait_until(drained, timeout=60, message="the jobs to succeed")
    finally:
        await bounced.close()
    assert sorted(c["job_id"] for c in jobs.CALLS[key]) == sorted(ids)
