"""`Scheduler("postgresql://...")`: the scheduler opens a pool of its own from a DSN, uses
it like an application's pool, and closes it at shutdown (issue 19.3)."""

from __future__ import annotations

import urllib.parse
import uuid
from functools import partial

import asyncpg

from scheduler import JobStatus, Scheduler
from scheduler.postgres.owned_pool import OWNED_POOL_MAX_SIZE
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, wait_until


def named_dsn() -> tuple[str, str]:
    """TEST_DSN tagged with an application_name, to count its connections on the server."""
    name = f"owned_{uuid.uuid4().hex[:10]}"
    return f"{TEST_DSN}{'&' if '?' in TEST_DSN else '?'}application_name={name}", name


async def connections(pool: asyncpg.Pool, name: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
    )
    return count


async def closed(pool: asyncpg.Pool, name: str) -> bool:
    # A backend leaves pg_stat_activity a moment after its client hangs up.
    return await connections(pool, name) == 0


async def test_a_scheduler_built_from_a_dsn_runs_jobs_and_closes_its_pool(
    pool: asyncpg.Pool, schema: str
) -> None:
    dsn, name = named_dsn()
    scheduler = Scheduler(dsn, schema=schema, tasks=[jobs.record])
    async with scheduler:
        job_id = await scheduler.schedule(jobs.record, args=("owned",))
        await wait_until(partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED))
        assert 0 < await connections(pool, name) <= OWNED_POOL_MAX_SIZE
    await wait_until(partial(closed, pool, name))  # closed by shutdown(), not left to the GC
    await scheduler.shutdown()  # again: nothing left to close, no error


async def test_a_producer_only_scheduler_from_a_dsn_closes_its_pool_too(
    pool: asyncpg.Pool, migrated: str
) -> None:
    dsn, name = named_dsn()
    producer = Scheduler(dsn, schema=migrated)
    job_id = await producer.schedule("m:f", delay=600)
    assert await connections(pool, name) >= 1
    await producer.shutdown()
    await wait_until(partial(closed, pool, name))
    assert await Scheduler(pool, schema=migrated).get_job(job_id) is not None


async def test_a_libpq_keyword_dsn_is_accepted(pool: asyncpg.Pool, migrated: str) -> None:
    parts = urllib.parse.urlsplit(TEST_DSN)
    keywords = (
        f"host={parts.hostname} port={parts.port or 5432} dbname={parts.path.lstrip('/')}"
        f" user={parts.username}" + (f" password='{parts.password}'" if parts.password else "")
    )
    producer = Scheduler(keywords, schema=migrated)
    try:
        job_id = await producer.schedule("m:f", delay=600)
    finally:
        await producer.shutdown()
    assert await Scheduler(pool, schema=migrated).get_job(job_id) is not None
