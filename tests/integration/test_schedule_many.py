"""schedule_many(): one statement, all or nothing, conflict policies honoured."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import asyncpg
import pytest

from scheduler import (
    ArgumentsNotSerializableError,
    ConflictResolution,
    InvalidJobError,
    JobAlreadyExistsError,
    JobIsRunningError,
    JobPriority,
    JobRequest,
    JobStatus,
)
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import count_jobs, has_status, holds, unique_schema, wait_until


async def test_a_batch_is_stored_in_order_with_each_jobs_settings(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    ids = await scheduler.schedule_many(
        [
            JobRequest(jobs.record, args=("k", 1)),
            JobRequest(
                jobs.record,
                execution_time=when,
                job_id="custom",
                priority=JobPriority.CRITICAL,
                max_retries=2,
                timeout=9,
            ),
            JobRequest("tests.support.jobs:record_sync", delay=60, kwargs={"key": "k"}),
        ]
    )
    assert len(ids) == 3 and ids[1] == "custom"
    custom = await scheduler.get_job("custom")
    assert custom is not None
    assert (custom.execution_time, custom.priority, custom.max_retries, custom.timeout) == (
        when,
        JobPriority.CRITICAL,
        2,
        9.0,
    )
    last = await scheduler.get_job(ids[2])
    assert last is not None and last.kwargs == {"key": "k"}
    assert await scheduler.schedule_many([]) == []


async def test_one_bad_request_writes_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    good = [JobRequest(jobs.record, args=("k", n)) for n in range(5)]
    with pytest.raises(ArgumentsNotSerializableError):
        await scheduler.schedule_many([*good, JobRequest(jobs.record, args=({1},))])
    with pytest.raises(InvalidJobError, match="twice"):
        await scheduler.schedule_many(
            [JobRequest(jobs.record, job_id="same"), JobRequest(jobs.record, job_id="same")]
        )
    assert await count_jobs(pool, migrated) == 0


async def test_raise_on_one_existing_id_rolls_the_whole_batch_back(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("old",), job_id="taken", delay=60)
    batch = [JobRequest(jobs.record, job_id=f"new-{n}") for n in range(3)]
    with pytest.raises(JobAlreadyExistsError, match="'taken'") as info:
        await scheduler.schedule_many([*batch, JobRequest(jobs.record, job_id="taken")])
    assert info.value.job_id == "taken"
    assert await count_jobs(pool, migrated) == 1


async def test_ignore_keeps_existing_jobs_and_inserts_the_rest(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("old",), job_id="taken", delay=60)
    ids = await scheduler.schedule_many(
        [
            JobRequest(jobs.record, args=("new",), job_id="taken", delay=60),
            JobRequest(jobs.record, args=("new",), job_id="fresh", delay=60),
        ],
        conflict_resolution=ConflictResolution.IGNORE,
    )
    assert ids == ["taken", "fresh"]
    taken = await scheduler.get_job("taken")
    assert taken is not None and taken.args == ("old",)
    assert await count_jobs(pool, migrated) == 2


async def test_replace_overwrites_but_refuses_the_batch_if_one_is_running(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        await scheduler.schedule(jobs.record, args=("old",), job_id="waiting", delay=60)
        await scheduler.schedule(jobs.wait_forever, args=(key,), job_id="busy")
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        with pytest.raises(JobIsRunningError, match="'busy'"):
            await scheduler.schedule_many(
                [
                    JobRequest(jobs.record, args=("new",), job_id="waiting", delay=60),
                    JobRequest(jobs.record, job_id="busy"),
                ],
                conflict_resolution=ConflictResolution.REPLACE,
            )
        waiting = await scheduler.get_job("waiting")
        assert waiting is not None and waiting.args == ("old",)  # rolled back too
        await scheduler.schedule_many(
            [JobRequest(jobs.record, args=("new",), job_id="waiting", delay=60)],
            conflict_resolution=ConflictResolution.REPLACE,
        )
        waiting = await scheduler.get_job("waiting")
        assert waiting is not None and waiting.args == ("new",)


async def test_a_batch_inside_a_rolled_back_transaction_leaves_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await scheduler.schedule_many(
            [JobRequest(jobs.record, job_id=f"tx-{n}") for n in range(3)], connection=conn
        )
        await transaction.rollback()
    assert await count_jobs(pool, migrated) == 0


async def test_a_batch_runs(migrated: str, make_scheduler: SchedulerFactory) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        ids = await scheduler.schedule_many(
            [JobRequest(jobs.record, args=(key, n)) for n in range(50)]
        )
        await wait_until(lambda: holds(len(jobs.calls(key)) == 50))
        for job_id in ids:
            await wait_until(partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED))
