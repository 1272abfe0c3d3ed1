"""Retrying failed and cancelled jobs (issue 12 item 3): one by id (API, CLI, SQL) or in
bulk, with fresh budgets, the attempt counter and history kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import asyncpg
import pytest

from scheduler import (
    AttemptOutcome,
    InvalidJobError,
    JobNotFoundError,
    JobNotRetryableError,
    JobStatus,
)
from tests.conftest import SchedulerFactory
from tests.integration.test_cli import cli
from tests.support import jobs
from tests.support.db import has_status, unique_schema, wait_until


async def test_a_failed_job_runs_again_with_fresh_budgets_and_its_history_kept(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.always_fail, args=(key,), max_retries=1)
        failed = await scheduler.wait_for_job(job_id, timeout=30)
        assert (failed.status, failed.attempts, failed.failures) == (JobStatus.FAILED, 2, 2)
        await scheduler.retry_job(job_id)
        again = await scheduler.wait_for_job(job_id, timeout=30)
    # Fresh budget: max_retries=1 bought two more attempts, numbered on from 3.
    assert (again.status, again.attempts, again.failures) == (JobStatus.FAILED, 4, 2)
    history = await scheduler.get_attempts(job_id)
    assert [a.attempt for a in history] == [1, 2, 3, 4]
    assert {a.outcome for a in history} == {AttemptOutcome.FAILED}


async def test_a_cancelled_job_can_be_retried_at_a_given_time(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("r",), delay=3600)
    assert await producer.cancel_job(job_id)
    at = datetime.now(timezone.utc) + timedelta(days=1)
    await producer.retry_job(job_id, at)
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    assert job.execution_time == at and not job.cancel_requested
    async with make_scheduler(tasks=[jobs.record]) as worker:
        await worker.cancel_job(job_id)
        await worker.retry_job(job_id)  # now
        done = await worker.wait_for_job(job_id, timeout=30)
    assert done.status is JobStatus.SUCCEEDED


async def test_only_failed_or_cancelled_jobs_are_retried_and_bad_input_writes_nothing(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("r",), delay=3600)
    with pytest.raises(JobNotRetryableError, match="is pending; only failed or cancelled"):
        await producer.retry_job(job_id)
    with pytest.raises(JobNotFoundError, match="no job 'missing'"):
        await producer.retry_job("missing")
    await producer.cancel_job(job_id)
    with pytest.raises(InvalidJobError, match="naive"):
        await producer.retry_job(job_id, datetime(2030, 1, 1))
    with pytest.raises(InvalidJobError, match="not both"):
        await producer.retry_job(job_id, datetime.now(timezone.utc), delay=5)
    with pytest.raises(InvalidJobError, match="since must be a timezone-aware"):
        await producer.retry_failed_jobs(since=datetime(2030, 1, 1))
    assert await has_status(producer, job_id, JobStatus.CANCELLED)


async def test_every_job_of_a_task_that_failed_since_a_time_is_retried_in_bulk(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        before = [await scheduler.schedule(jobs.always_fail, args=(key,)) for _ in range(2)]
        for job_id in before:
            await scheduler.wait_for_job(job_id, timeout=30)
        since: datetime = await pool.fetchval("SELECT now()")
        after = [await scheduler.schedule(jobs.always_fail, args=(key,)) for _ in range(3)]
        other = await scheduler.schedule(jobs.fail_first, args=(key, 5))
        for job_id in [*after, other]:
            await scheduler.wait_for_job(job_id, timeout=30)
    assert await scheduler.retry_failed_jobs(jobs.always_fail, since=since) == 3
    for job_id in after:
        assert await has_status(scheduler, job_id, JobStatus.PENDING)
    for job_id in [*before, other]:
        assert await has_status(scheduler, job_id, JobStatus.FAILED)
    # By name, from the CLI, without --since: the rest of that task's failures.
    retried = cli("retry-failed", "--task", "tests.support.jobs:always_fail", schema=migrated)
    assert retried.stdout.strip() == "retrying 2 job(s)", retried.stderr
    for job_id in before:
        await wait_until(partial(has_status, scheduler, job_id, JobStatus.PENDING))
    assert await has_status(scheduler, other, JobStatus.FAILED)


async def test_the_cli_retries_one_job_at_a_time(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("r",), delay=3600)
    await producer.cancel_job(job_id)
    shown = cli("retry", job_id, "--delay", "60", schema=migrated)
    assert shown.stdout.strip() == f"retrying {job_id}", shown.stderr
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING
