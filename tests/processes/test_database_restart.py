"""A PostgreSQL restart while jobs run: nothing is lost and the scheduler carries on.
Runs on a private throwaway cluster; the shared server is never touched."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from scheduler import JobStatus, Scheduler
from tests.support import jobs
from tests.support.db import unique_schema, wait_until
from tests.support.processes import ThrowawayCluster

pytestmark = pytest.mark.processes


async def schedule_until_accepted(scheduler: Scheduler, key: str, n: int) -> str:
    """A producer retries while the server is down; an acknowledged job is never lost."""
    while True:
        try:
            return await scheduler.schedule(
                jobs.sleep_then_record, args=(key, 0.2), kwargs={}, job_id=f"{key}-{n}"
            )
        except (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
        ):
            await anyio.sleep(0.1)


async def test_a_database_restart_mid_run_loses_nothing(cluster: ThrowawayCluster) -> None:
    key = unique_schema("k")
    pool = await asyncpg.create_pool(cluster.dsn, min_size=2, max_size=12)
    assert pool is not None
    scheduler = Scheduler(
        pool,
        schema="restart",
        lease_time=6.0,
        heartbeat_interval=0.5,
        poll_interval=0.5,
        reap_interval=0.5,
        listener_check_interval=0.5,
        listener_check_timeout=1.0,
    )
    try:
        async with scheduler:
            ids = [await schedule_until_accepted(scheduler, key, n) for n in range(60)]
            await wait_until(lambda: _started(key, 5), message="jobs to be running")
            await anyio.to_thread.run_sync(cluster.restart)
            ids += [await schedule_until_accepted(scheduler, key, n) for n in range(60, 90)]

            async def all_succeeded() -> bool:
                try:
                    statuses = [await scheduler.get_job(job_id) for job_id in ids]
                except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                    return False
                return all(j is not None and j.status is JobStatus.SUCCEEDED for j in statuses)

            await wait_until(all_succeeded, timeout=60, message="every job to succeed")
            listener = scheduler._started().listener
            assert listener is not None and listener.connections_made >= 2  # it re-listened
        finished = {c["job_id"] for c in jobs.calls(key, event="finished")}
        assert finished == set(ids)
    finally:
        await pool.close()


async def _started(key: str, count: int) -> bool:
    return len(jobs.calls(key, event="started")) >= count
