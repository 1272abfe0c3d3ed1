"""schedule(): what it stores, what it refuses, and conflict policies on custom ids."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

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
    PayloadTooLargeError,
    TaskNotNameableError,
)
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import count_jobs, has_status, wait_until


async def db_now(pool: asyncpg.Pool) -> datetime:
    value: datetime = await pool.fetchval("SELECT now()")
    return value


async def test_a_scheduled_job_is_stored_with_its_settings(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    job_id = await scheduler.schedule(
        jobs.record,
        execution_time=when,
        args=("k",),
        kwargs={"value": [1, 2]},
        job_id="report-1",
        priority=JobPriority.CRITICAL,
        max_retries=3,
        timeout=12.5,
    )
    assert job_id == "report-1"
    job = await scheduler.get_job(job_id)
    assert job is not None
    assert (job.task_name, job.args, job.kwargs) == (
        "tests.support.jobs:record",
        ("k",),
        {"value": [1, 2]},
    )
    assert (job.status, job.priority, job.attempts, job.max_retries, job.timeout) == (
        JobStatus.PENDING,
        JobPriority.CRITICAL,
        0,
        3,
        12.5,
    )
    assert job.execution_time == when
    assert job.lease_owner is None and job.last_error is None and not job.is_finished
    assert await scheduler.get_job("no-such-job") is None


async def test_generated_ids_are_unique_and_default_time_is_database_now(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    before = await db_now(pool)
    ids = {await scheduler.schedule(jobs.record, args=("k",)) for _ in range(20)}
    assert len(ids) == 20
    job = await scheduler.get_job(ids.pop())
    assert job is not None and job.execution_time >= before


async def test_delay_is_measured_from_the_database_clock(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    before = await db_now(pool)
    job_id = await scheduler.schedule(jobs.record, delay=timedelta(minutes=10), args=("k",))
    after = await db_now(pool)
    job = await scheduler.get_job(job_id)
    assert job is not None
    assert before + timedelta(minutes=10) <= job.execution_time <= after + timedelta(minutes=10)


# One bad value of each kind, refused with the database there: nothing is written. Every
# value schedule() refuses, and its message, is checked in tests/unit/test_schedule_input.py.
ONE_OF_EACH_KIND: list[tuple[Any, dict[str, Any], type[Exception]]] = [
    (jobs.record, {"delay": -1}, InvalidJobError),
    (jobs.record, {"args": ("a\x00b",)}, ArgumentsNotSerializableError),
    (jobs.record, {"args": ("x" * 70_000,)}, PayloadTooLargeError),
    ("tasks:run\n", {}, TaskNotNameableError),
]


@pytest.mark.parametrize(("task", "kwargs", "error"), ONE_OF_EACH_KIND)
async def test_bad_input_of_each_kind_writes_nothing(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    task: Any,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await make_scheduler().schedule(task, **kwargs)
    assert await count_jobs(pool, migrated) == 0


async def test_the_widest_accepted_values_are_stored_and_read_back(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    latest = datetime(9999, 12, 30, tzinfo=timezone.utc)
    huge = 10**4300 - 1
    await scheduler.schedule(
        jobs.accept_anything,
        execution_time=latest,
        args=(huge, -huge, "é😀", 1e308),
        kwargs={"ключ": "\t\n"},
        job_id="wide-é😀",
        max_retries=2**31 - 1,
    )
    job = await scheduler.get_job("wide-é😀")
    assert job is not None
    assert (job.execution_time, job.max_retries) == (latest, 2**31 - 1)
    # jsonb keeps numbers exactly; it spells 1e308 with all its digits, so it reads as an int.
    assert job.args == (huge, -huge, "é😀", 10**308)
    assert job.kwargs == {"ключ": "\t\n"}
    far = await scheduler.schedule(jobs.record, delay=timedelta(days=365 * 999), args=("k",))
    stored = await scheduler.get_job(far)
    assert stored is not None and stored.execution_time.year >= 3000


async def test_a_callable_registered_under_a_name_is_scheduled_under_that_name(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    scheduler.register(jobs.record, name="reports.monthly", max_retries=4)
    shout = lambda text: None  # noqa: E731 - a lambda is the point
    scheduler.register(shout, name="reports.shout")
    first = await scheduler.schedule(jobs.record, args=("k",), delay=60)
    second = await scheduler.schedule(shout, args=("hey",), delay=60)
    [third] = await scheduler.schedule_many([JobRequest(shout, args=("x",), delay=60)])
    stored = [await scheduler.get_job(job_id) for job_id in (first, second, third)]
    assert [(job.task_name, job.max_retries) for job in stored if job] == [
        ("reports.monthly", 4),
        ("reports.shout", 0),
        ("reports.shout", 0),
    ]


async def test_raise_refuses_a_duplicate_id_in_any_state(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("a",), job_id="dup", delay=60)
    with pytest.raises(JobAlreadyExistsError, match="IGNORE") as info:
        await scheduler.schedule(jobs.record, args=("b",), job_id="dup")
    assert info.value.job_id == "dup"
    job = await scheduler.get_job("dup")
    assert job is not None and job.args == ("a",)


async def test_ignore_returns_the_existing_id_and_changes_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("a",), job_id="dup", delay=60)
    before = await scheduler.get_job("dup")
    again = await scheduler.schedule(
        jobs.record,
        args=("b",),
        job_id="dup",
        priority=JobPriority.CRITICAL,
        conflict_resolution=ConflictResolution.IGNORE,
    )
    assert again == "dup"
    assert await scheduler.get_job("dup") == before


async def test_replace_overwrites_a_pending_job_in_place(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("a",), job_id="dup", delay=60)
    when = datetime.now(timezone.utc) + timedelta(minutes=30)
    replaced = await scheduler.schedule(
        jobs.record_sync,
        execution_time=when,
        args=("b",),
        job_id="dup",
        priority=JobPriority.HIGH,
        max_retries=2,
        conflict_resolution=ConflictResolution.REPLACE,
    )
    assert replaced == "dup"
    job = await scheduler.get_job("dup")
    assert job is not None
    assert (job.task_name, job.args, job.priority, job.max_retries, job.execution_time) == (
        "tests.support.jobs:record_sync",
        ("b",),
        JobPriority.HIGH,
        2,
        when,
    )
    assert await count_jobs(pool, migrated) == 1


async def test_replace_revives_a_finished_job_as_a_fresh_pending_one(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("a",), job_id="dup", delay=60)
    assert await scheduler.cancel_job("dup")
    await scheduler.schedule(
        jobs.record,
        args=("b",),
        job_id="dup",
        delay=60,
        conflict_resolution=ConflictResolution.REPLACE,
    )
    job = await scheduler.get_job("dup")
    assert job is not None
    assert (job.status, job.args, job.attempts, job.finished_at, job.cancel_requested) == (
        JobStatus.PENDING,
        ("b",),
        0,
        None,
        False,
    )


async def test_replace_does_not_touch_a_running_job(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    await scheduler.schedule(jobs.wait_forever, args=("replace-running",), job_id="busy")
    await wait_until(partial(has_status, scheduler, "busy", JobStatus.RUNNING))
    with pytest.raises(JobIsRunningError, match="cancel it first"):
        await scheduler.schedule(
            jobs.record,
            args=("b",),
            job_id="busy",
            conflict_resolution=ConflictResolution.REPLACE,
        )
    job = await scheduler.get_job("busy")
    assert job is not None and job.task_name == "tests.support.jobs:wait_forever"


async def test_a_rolled_back_enqueue_reserves_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await scheduler.schedule(jobs.record, args=("a",), job_id="tx", connection=conn)
        await transaction.rollback()
    assert await scheduler.get_job("tx") is None
    assert await scheduler.schedule(jobs.record, args=("b",), job_id="tx") == "tx"
    async with pool.acquire() as conn, conn.transaction():
        await scheduler.schedule(jobs.record, args=("c",), job_id="tx2", connection=conn)
    assert await scheduler.get_job("tx2") is not None


@pytest.mark.parametrize("policy", list(ConflictResolution))
async def test_fifty_concurrent_schedules_of_one_id(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    policy: ConflictResolution,
) -> None:
    scheduler = make_scheduler()
    big_pool = await asyncpg.create_pool(pool._connect_args[0], min_size=50, max_size=50)  # type: ignore[attr-defined]
    assert big_pool is not None
    producer = make_scheduler(db_pool=big_pool)
    try:
        results = await asyncio.gather(
            *(
                producer.schedule(
                    jobs.record, args=("n", i), job_id="hot", delay=60, conflict_resolution=policy
                )
                for i in range(50)
            ),
            return_exceptions=True,
        )
    finally:
        await big_pool.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert await count_jobs(pool, migrated) == 1
    if policy is ConflictResolution.RAISE:
        assert results.count("hot") == 1
        assert len(errors) == 49 and all(isinstance(e, JobAlreadyExistsError) for e in errors)
    else:
        assert results == ["hot"] * 50
    job = await scheduler.get_job("hot")
    assert job is not None and job.args[0] == "n" and job.status is JobStatus.PENDING


MAX_UTC = datetime.max.replace(tzinfo=timezone.utc)
MIN_UTC = datetime.min.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("infinity", MAX_UTC),
        ("20000-01-01 00:00Z", MAX_UTC),
        ("-infinity", MIN_UTC),
        ("4000-06-01 00:00Z BC", MIN_UTC),
        ("2030-01-01 00:00Z", datetime(2030, 1, 1, tzinfo=timezone.utc)),
    ],
)
async def test_a_row_written_by_sql_is_read_whatever_it_holds(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stored: str, read: datetime
) -> None:
    # Times past Python's datetime read as its nearest bound (in UTC); integers longer than
    # Python's int <-> str limit read exactly. (Cancelled: the NOTIFY trigger of a pending
    # row cannot compute a delay to 'infinity'.)
    await pool.execute(
        f"INSERT INTO {quote_identifier(migrated)}.jobs"
        " (job_id, task_name, args, kwargs, status, execution_time, started_at, finished_at)"
        " VALUES ('odd', 'no.such:task', $1::jsonb, $2::jsonb, 'cancelled',"
        " $3::text::timestamptz, $3::text::timestamptz, NULL)",
        "[" + "9" * 5000 + ", 1e400, -1e-400]",
        '{"n": -' + "1" * 4400 + "}",
        stored,
    )
    job = await make_scheduler().get_job("odd")
    assert job is not None
    assert (job.execution_time, job.started_at, job.finished_at) == (read, read, None)
    assert job.execution_time.tzinfo is not None
    assert job.args == (10**5000 - 1, 10**400, 0.0)
    assert job.kwargs == {"n": -(10**4400 - 1) // 9}
