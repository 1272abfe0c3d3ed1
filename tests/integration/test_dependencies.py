"""Dependencies (issue 12 item 5): a job starts only after every job it depends on
succeeded; a failure or cancellation cancels exactly the jobs downstream of it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from scheduler import (
    ConflictResolution,
    InvalidJobError,
    JobNotRetryableError,
    JobRequest,
    JobStatus,
    UnknownDependencyError,
)
from scheduler.models import Job
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import count_jobs, unique_schema

TASK = "tests.support.jobs:record"


async def started_after_all_of(scheduler: object, job_id: str, dependencies: list[str]) -> bool:
    """The job's first attempt started after every dependency's successful attempt ended
    (database clock, from the attempt history)."""
    [own, *_] = await scheduler.get_attempts(job_id)  # type: ignore[attr-defined]
    for dependency in dependencies:
        *_, last = await scheduler.get_attempts(dependency)  # type: ignore[attr-defined]
        assert own.claimed_at is not None
        if own.claimed_at < last.finished_at:
            return False
    return True


async def test_fan_out_then_fan_in_runs_every_job_after_its_dependencies(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(max_concurrent_jobs=4) as scheduler:
        root = await scheduler.schedule(jobs.sleep_then_record, args=(key, 0.2))
        middle = [
            await scheduler.schedule(jobs.record, args=(key,), depends_on=[root]) for _ in range(3)
        ]
        waiting = await scheduler.get_job(middle[0])
        assert waiting is not None and waiting.status is JobStatus.BLOCKED
        assert waiting.depends_on == (root,)
        last = await scheduler.schedule(jobs.record, args=(key,), depends_on=[*middle, root])
        finished = await scheduler.wait_for_job(last, timeout=30)
    assert finished.status is JobStatus.SUCCEEDED
    for job_id in middle:
        assert await started_after_all_of(scheduler, job_id, [root])
    assert await started_after_all_of(scheduler, last, [*middle, root])
    assert len(jobs.calls(key)) == 2 + 3 + 1  # root's two events, then one per job


async def test_a_failure_mid_chain_cancels_exactly_the_jobs_downstream(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        root = await scheduler.schedule(jobs.record, args=(key,))
        failing = await scheduler.schedule(jobs.always_fail, args=(key,), depends_on=[root])
        sibling = await scheduler.schedule(jobs.record, args=(key,), depends_on=[root])
        child = await scheduler.schedule(jobs.record, args=(key,), depends_on=[failing])
        grandchild = await scheduler.schedule(jobs.record, args=(key,), depends_on=[child, sibling])
        unrelated = await scheduler.schedule(jobs.record, args=(key,), depends_on=[sibling])
        ended = {
            job_id: await scheduler.wait_for_job(job_id, timeout=30)
            for job_id in (root, failing, sibling, child, grandchild, unrelated)
        }
    status = {job_id: job.status for job_id, job in ended.items()}
    assert status == {
        root: JobStatus.SUCCEEDED,
        failing: JobStatus.FAILED,
        sibling: JobStatus.SUCCEEDED,
        child: JobStatus.CANCELLED,
        grandchild: JobStatus.CANCELLED,
        unrelated: JobStatus.SUCCEEDED,
    }
    assert ended[child].last_error == f"cancelled: dependency '{failing}' failed"
    assert ended[grandchild].last_error == f"cancelled: dependency '{child}' was cancelled"
    assert await scheduler.get_attempts(child) == []  # never started
    assert len(jobs.calls(key)) == 4  # root, failing's attempt, sibling, unrelated


async def test_cancelling_a_dependency_cancels_its_dependants_and_blocked_jobs_cancel_at_once(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    first = await producer.schedule(jobs.record, args=("d",), delay=3600)
    second = await producer.schedule(jobs.record, args=("d",), depends_on=[first])
    third = await producer.schedule(jobs.record, args=("d",), depends_on=[second])
    assert await producer.cancel_job(third)  # blocked: cancelled at once
    assert await producer.cancel_job(first)
    job = await producer.get_job(second)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert job.last_error == f"cancelled: dependency '{first}' was cancelled"


async def test_dependencies_already_finished_count_at_schedule_time(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        done = await scheduler.schedule(jobs.record, args=(key,))
        failed = await scheduler.schedule(jobs.always_fail, args=(key,))
        await scheduler.wait_for_job(done, timeout=30)
        await scheduler.wait_for_job(failed, timeout=30)
        runs = await scheduler.schedule(jobs.record, args=(key,), depends_on=[done])
        doomed = await scheduler.schedule(jobs.record, args=(key,), depends_on=[done, failed])
        assert (await scheduler.wait_for_job(runs, timeout=30)).status is JobStatus.SUCCEEDED
        cancelled = await scheduler.wait_for_job(doomed, timeout=1)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.last_error == f"cancelled: dependency '{failed}' failed"


async def test_bad_dependencies_are_typed_errors_and_write_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    existing = await producer.schedule(jobs.record, args=("d",), delay=3600)
    with pytest.raises(UnknownDependencyError, match="depends on 'ghost', which does not exist"):
        await producer.schedule(jobs.record, args=("d",), depends_on=[existing, "ghost"])
    with pytest.raises(InvalidJobError, match="cannot depend on itself"):
        await producer.schedule(jobs.record, job_id="me", depends_on=["me"])
    with pytest.raises(InvalidJobError, match="list of job ids"):
        await producer.schedule(jobs.record, depends_on=existing)
    with pytest.raises(InvalidJobError, match="REPLACE"):
        await producer.schedule(
            jobs.record, depends_on=[existing], conflict_resolution=ConflictResolution.REPLACE
        )
    with pytest.raises(InvalidJobError, match="form a cycle"):
        await producer.schedule_many(
            [
                JobRequest(jobs.record, job_id="a", depends_on=["b"]),
                JobRequest(jobs.record, job_id="b", depends_on=["a"]),
            ]
        )
    assert await count_jobs(pool, migrated) == 1


async def test_a_whole_workflow_in_one_batch_in_any_order(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        ids = await scheduler.schedule_many(
            [
                JobRequest(jobs.record, args=(key,), job_id=f"{key}-c", depends_on=[f"{key}-b"]),
                JobRequest(jobs.record, args=(key,), job_id=f"{key}-b", depends_on=[f"{key}-a"]),
                JobRequest(jobs.record, args=(key,), job_id=f"{key}-a"),
            ]
        )
        last = await scheduler.wait_for_job(ids[0], timeout=30)
    assert last.status is JobStatus.SUCCEEDED
    assert [call["job_id"] for call in jobs.calls(key)] == [f"{key}-a", f"{key}-b", f"{key}-c"]


async def test_retrying_a_dependant_needs_its_dependency_retried_first(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        flaky = await scheduler.schedule(jobs.fail_first, args=(key, 1))
        after = await scheduler.schedule(jobs.record, args=(key,), depends_on=[flaky])
        assert (await scheduler.wait_for_job(after, timeout=30)).status is JobStatus.CANCELLED
        with pytest.raises(JobNotRetryableError, match=f"retry '{flaky}' first"):
            await scheduler.retry_job(after)
        await scheduler.retry_job(flaky, delay=0.3)
        await scheduler.retry_job(after)
        job = await scheduler.get_job(after)
        assert job is not None and job.status is JobStatus.BLOCKED  # waits again
        done = await scheduler.wait_for_job(after, timeout=30)
    assert done.status is JobStatus.SUCCEEDED
    assert await started_after_all_of(scheduler, after, [flaky])


async def test_replace_cannot_release_a_blocked_job(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    first = await producer.schedule(jobs.record, args=("d",), delay=3600)
    blocked = await producer.schedule(jobs.record, args=("d",), depends_on=[first])
    await producer.schedule(
        jobs.record, args=("new",), job_id=blocked, conflict_resolution=ConflictResolution.REPLACE
    )
    job = await producer.get_job(blocked)
    assert job is not None and (job.status, job.args) == (JobStatus.BLOCKED, ("new",))


async def test_dependencies_from_plain_sql(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    producer = make_scheduler()
    first = await producer.schedule(jobs.record, args=("d",))
    async with pool.acquire() as conn, conn.transaction():
        later = await conn.fetchval(f"SELECT {q}.schedule_job($1)", TASK)
        assert await conn.fetchval(f"SELECT {q}.add_dependencies($1, $2)", later, [first]) == (
            "blocked"
        )
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        orphan = await conn.fetchval(f"SELECT {q}.schedule_job($1)", TASK)
        with pytest.raises(asyncpg.NoDataFoundError, match="which does not exist"):
            await conn.fetchval(f"SELECT {q}.add_dependencies($1, $2)", orphan, ["nope"])
        await transaction.rollback()
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1])", TASK)
    [claimed] = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 5)", worker)
    assert claimed["job_id"] == first  # the blocked one is not claimable
    assert await pool.fetchval(f"SELECT {q}.complete_job($1, $2, 1)", worker, first)
    job: Job | None = await producer.get_job(later)
    assert job is not None and job.status is JobStatus.PENDING
    assert uuid.UUID(later)


async def test_a_fan_in_over_dependencies_finishing_together_on_two_replicas_runs_once(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Dependencies whose successes are recorded concurrently (batched with claims, on two
    replicas) count down exactly once each: the fan-in job runs once, after all."""
    key = unique_schema("k")
    first, second = make_scheduler(tasks=[jobs.record]), make_scheduler(tasks=[jobs.record])
    async with first, second:
        producer = make_scheduler()
        dependencies = await producer.schedule_many(
            [JobRequest(jobs.record, args=(key,), delay=0.3) for _ in range(60)]
        )
        last = await producer.schedule(jobs.record, args=(key,), depends_on=dependencies)
        done = await producer.wait_for_job(last, timeout=30)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
    assert await started_after_all_of(producer, last, dependencies)
    assert [call["job_id"] for call in jobs.calls(key)].count(last) == 1
