"""Fault injection in one process: connections killed, a starved pool, cancel racing a
claim. Each scenario asserts the outcome of every job, not only that nothing raised."""

from __future__ import annotations

from functools import partial

import anyio
import asyncpg

from scheduler import JobStatus, Scheduler
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, holds, unique_schema, wait_until


async def all_have_status(scheduler: Scheduler, ids: list[str], status: JobStatus) -> bool:
    for job_id in ids:
        if not await has_status(scheduler, job_id, status):
            return False
    return True


async def test_terminating_every_scheduler_connection_mid_run_loses_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    own_pool = await asyncpg.create_pool(
        TEST_DSN, min_size=4, max_size=12, server_settings={"application_name": key}
    )
    assert own_pool is not None
    try:
        async with make_scheduler(db_pool=own_pool) as scheduler:
            ids = [
                await scheduler.schedule(jobs.sleep_then_record, args=(key, 0.3)) for _ in range(40)
            ]
            for _ in range(3):  # three rounds of killing every connection it holds
                await wait_until(lambda: holds(jobs.calls(key, event="started")))
                killed = await pool.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = $1",
                    key,
                )
                assert killed >= 1
                await anyio.sleep(0.2)  # let the next round hit jobs in a new state
            await wait_until(
                partial(all_have_status, scheduler, ids, JobStatus.SUCCEEDED), timeout=60
            )
            listener = scheduler._started().listener
            assert listener is not None and listener.connections_made >= 2
        finished = {c["job_id"] for c in jobs.calls(key, event="finished")}
        assert finished == set(ids)
    finally:
        await own_pool.close()


async def test_a_pool_smaller_than_the_concurrency_does_not_deadlock(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    small = await asyncpg.create_pool(TEST_DSN, min_size=1, max_size=3)
    assert small is not None
    jobs.use_pool(key, small)
    try:
        async with make_scheduler(db_pool=small, max_concurrent_jobs=10) as scheduler:
            ids = [
                await scheduler.schedule(jobs.query_then_record, args=(key, 0.05))
                for _ in range(30)
            ]
            await wait_until(
                partial(all_have_status, scheduler, ids, JobStatus.SUCCEEDED), timeout=60
            )
            job = await scheduler.get_job(ids[-1])
            assert job is not None and job.attempts == 1  # no lease was lost on the way
    finally:
        await small.close()


async def test_cancel_racing_a_claim_never_reports_cancelled_for_a_job_that_ran(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        outcomes: dict[str, bool] = {}
        for _ in range(40):
            job_id = await scheduler.schedule(jobs.record_sync, args=(key,))
            outcomes[job_id] = await scheduler.cancel_job(job_id)
        for job_id in outcomes:
            await wait_until(partial(_finished, scheduler, job_id))
    ran = {c["job_id"] for c in jobs.calls(key)}
    for job_id, cancelled in outcomes.items():
        job = await scheduler.get_job(job_id)
        assert job is not None
        if job.status is JobStatus.CANCELLED:
            assert cancelled and job_id not in ran
        else:
            assert job.status is JobStatus.SUCCEEDED and job_id in ran and not cancelled


async def _finished(scheduler: Scheduler, job_id: str) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.is_finished
