"""Running jobs: outcomes, retries, timeouts, cancellation, sync tasks, and what runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from functools import partial

import asyncpg
import pytest

from scheduler import ConflictResolution, JobPriority, JobStatus, Scheduler, running_jobs
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, holds, unique_schema, wait_until


async def finished(scheduler: Scheduler, job_id: str) -> JobStatus:
    async def terminal() -> JobStatus | None:
        job = await scheduler.get_job(job_id)
        return job.status if job is not None and job.is_finished else None

    status = await wait_until(terminal, message=f"job {job_id} to finish")
    assert status is not None
    return status


async def test_async_and_sync_tasks_run_once_and_succeed(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        first = await scheduler.schedule(jobs.record, args=(key, 1))
        second = await scheduler.schedule(jobs.record_sync, args=(key,), kwargs={"value": 2})
        assert await finished(scheduler, first) is JobStatus.SUCCEEDED
        assert await finished(scheduler, second) is JobStatus.SUCCEEDED
    values = sorted(c["value"] for c in jobs.calls(key))
    assert values == [1, 2]
    sync_call = jobs.calls(key, value=2)[0]
    assert sync_call["thread"] != "MainThread"
    job = await scheduler.get_job(first)
    assert job is not None
    assert (job.attempts, job.lease_owner, job.last_error) == (1, None, None)
    assert job.started_at is not None and job.finished_at is not None


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.fail_first, args=(key, 2), max_retries=3)
        assert await finished(scheduler, job_id) is JobStatus.SUCCEEDED
    job = await scheduler.get_job(job_id)
    assert job is not None and job.attempts == 3 and job.last_error is None
    assert [c["attempt"] for c in jobs.calls(key)] == [1, 2, 3]


async def test_a_job_out_of_retries_ends_failed_with_its_error(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.always_fail, args=(key,), max_retries=1)
        assert await finished(scheduler, job_id) is JobStatus.FAILED
    job = await scheduler.get_job(job_id)
    assert job is not None and job.attempts == 2
    assert job.last_error is not None and "ValueError: this job always fails" in job.last_error
    assert len(jobs.calls(key)) == 2


async def test_retry_waits_for_the_backoff_delay(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    from scheduler import RetryBackoff

    key = unique_schema("k")
    backoff = RetryBackoff(base=30, jitter=False)
    async with make_scheduler(retry_backoff=backoff) as scheduler:
        job_id = await scheduler.schedule(jobs.always_fail, args=(key,), max_retries=1)

        async def retry_is_scheduled() -> bool:
            job = await scheduler.get_job(job_id)
            return job is not None and job.attempts == 1 and job.status is JobStatus.PENDING

        await wait_until(retry_is_scheduled)
        job = await scheduler.get_job(job_id)
        assert job is not None and job.last_error is not None
        assert job.execution_time - job.updated_at == timedelta(seconds=30)


async def test_a_timeout_interrupts_the_job_and_counts_as_a_failure(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.wait_forever, args=(key,), timeout=0.2)
        assert await finished(scheduler, job_id) is JobStatus.FAILED
    job = await scheduler.get_job(job_id)
    assert job is not None and job.last_error == "timed out after 0.2 seconds"
    assert [c["event"] for c in jobs.calls(key)] == ["started", "interrupted"]


async def test_a_jobs_own_timeout_error_is_a_plain_failure(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.raise_timeout_error, args=(key,), timeout=30)
        assert await finished(scheduler, job_id) is JobStatus.FAILED
    job = await scheduler.get_job(job_id)
    assert job is not None and job.last_error is not None
    assert "the job's own network call timed out" in job.last_error


@pytest.mark.parametrize("task", [jobs.raise_cancelled, jobs.raise_keyboard_interrupt])
async def test_base_exceptions_escaping_a_job_are_recorded_and_free_the_slot(
    migrated: str, make_scheduler: SchedulerFactory, task: object
) -> None:
    key = unique_schema("k")
    async with make_scheduler(max_concurrent_jobs=1) as scheduler:
        bad = await scheduler.schedule(task, args=(key,))  # type: ignore[arg-type]
        assert await finished(scheduler, bad) is JobStatus.FAILED
        good = await scheduler.schedule(jobs.record, args=(key, "after"))
        assert await finished(scheduler, good) is JobStatus.SUCCEEDED
        assert scheduler.running_job_ids == []


async def test_cancelling_a_pending_job_means_it_never_starts(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.record, args=(key,), delay=0.5)
        assert await scheduler.cancel_job(job_id) is True
        assert await scheduler.cancel_job(job_id) is False  # already finished
        assert await scheduler.cancel_job("nonexistent") is False
        marker = await scheduler.schedule(jobs.record, args=(key, "marker"), delay=0.7)
        await finished(scheduler, marker)
    assert [c["value"] for c in jobs.calls(key)] == ["marker"]
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.attempts == 0


async def test_cancelling_a_running_job_cancels_its_coroutine_without_retry(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as runner, make_scheduler() as other:
        job_id = await runner.schedule(jobs.wait_forever, args=(key,), max_retries=5)
        await wait_until(lambda: holds(bool(jobs.calls(key, event="started"))))
        # Cancelled from another replica: the request travels by NOTIFY.
        assert await other.cancel_job(job_id) is True
    job = await runner.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.attempts == 1
    assert [c["event"] for c in jobs.calls(key)] == ["started", "interrupted"]


async def test_a_cancelled_job_cleans_up_while_the_heartbeat_keeps_seeing_the_request(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """The heartbeat reports the cancel request on every beat until the attempt ends; the
    job is interrupted once, so its clean-up (awaiting over several beats) completes."""
    key = unique_schema("k")
    async with make_scheduler(heartbeat_interval=0.2) as runner:
        job_id = await runner.schedule(jobs.clean_up_when_cancelled, args=(key, 1.5))
        await wait_until(lambda: holds(bool(jobs.calls(key, event="started"))))
        assert await runner.cancel_job(job_id) is True
        await wait_until(partial(has_status, runner, job_id, JobStatus.CANCELLED), timeout=20)
    assert [c["event"] for c in jobs.calls(key)] == ["started", "cleaning up", "cleaned up"]


async def test_a_cancel_the_job_swallowed_is_sent_again_later(
    migrated: str, make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once per request, but not only once: a job still running CANCEL_REPEAT_AFTER after
    the interrupt is interrupted again (here 0.5 s instead of 30)."""
    monkeypatch.setattr(running_jobs, "CANCEL_REPEAT_AFTER", 0.5)
    key = unique_schema("k")
    async with make_scheduler(heartbeat_interval=0.2) as runner:
        job_id = await runner.schedule(jobs.swallow_the_first_cancel, args=(key,))
        await wait_until(lambda: holds(bool(jobs.calls(key, event="started"))))
        assert await runner.cancel_job(job_id) is True
        await wait_until(partial(has_status, runner, job_id, JobStatus.CANCELLED), timeout=20)
    events = [c["event"] for c in jobs.calls(key)]
    assert events == ["started", "swallowed a cancellation", "stopped"]


async def test_a_cancel_that_loses_the_race_reports_the_real_outcome(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.sleep_sync, args=(key, 0.3))
        await wait_until(lambda: holds(bool(jobs.calls(key, event="started"))))
        # A thread cannot be interrupted: it completes, and we must not claim otherwise.
        assert await scheduler.cancel_job(job_id) is False
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert [c["event"] for c in jobs.calls(key)] == ["started", "finished"]


async def test_due_jobs_start_in_priority_then_time_order(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    producer = make_scheduler()
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    plan = [
        ("low-old", JobPriority.LOW, 0),
        ("normal-new", JobPriority.NORMAL, 3),
        ("critical-new", JobPriority.CRITICAL, 2),
        ("normal-old", JobPriority.NORMAL, 1),
        ("high", JobPriority.HIGH, 4),
        ("critical-old", JobPriority.CRITICAL, 1),
    ]
    for name, priority, minute in plan:
        await producer.schedule(
            jobs.record,
            execution_time=base + timedelta(minutes=minute),
            args=(key, name),
            priority=priority,
        )
    async with make_scheduler(max_concurrent_jobs=1, tasks=[jobs.record]) as scheduler:
        await wait_until(lambda: holds(len(jobs.calls(key)) == len(plan)))
        assert scheduler.worker_id is not None
    assert [c["value"] for c in jobs.calls(key)] == [
        "critical-old",
        "critical-new",
        "high",
        "normal-old",
        "normal-new",
        "low-old",
    ]


async def test_a_replica_claims_only_tasks_it_registered(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    table = f"{quote_identifier(migrated)}.jobs"
    await pool.execute(
        f"INSERT INTO {table} (job_id, task_name, args) VALUES"
        " ('evil', 'os:system', '[\"touch /tmp/pwned\"]'),"
        " ('unknown', 'billing:charge', '[]')"
    )
    key = unique_schema("k")
    async with make_scheduler(unrunnable_job_timeout=None) as scheduler:
        marker = await scheduler.schedule(jobs.record, args=(key,))
        await finished(scheduler, marker)
        await scheduler._started().reaper.run_once()
        for job_id in ("evil", "unknown"):
            job = await scheduler.get_job(job_id)
            assert job is not None and job.status is JobStatus.PENDING and job.attempts == 0


async def test_a_job_no_live_worker_can_run_is_failed_with_a_clear_error(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    table = f"{quote_identifier(migrated)}.jobs"
    await pool.execute(
        f"INSERT INTO {table} (job_id, task_name, execution_time)"
        " VALUES ('evil', 'os:system', now() - interval '2 minutes'),"
        "        ('fresh', 'os:system', now())"
    )
    async with make_scheduler(unrunnable_job_timeout=60) as scheduler:
        # The reaper's first sweep (at start, with housekeeping) fails it.
        await wait_until(lambda: has_status(scheduler, "evil", JobStatus.FAILED))
        evil = await scheduler.get_job("evil")
        fresh = await scheduler.get_job("fresh")
    assert evil is not None and evil.status is JobStatus.FAILED and evil.attempts == 0
    assert evil.last_error is not None and "no live worker registered task 'os:system'" in (
        evil.last_error
    )
    assert fresh is not None and fresh.status is JobStatus.PENDING


async def test_due_ness_follows_the_database_clock_not_the_replicas(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = unique_schema("k")
    now = await pool.fetchval("SELECT now()")
    producer = make_scheduler()
    await producer.schedule(
        jobs.record, execution_time=now + timedelta(minutes=10), args=(key, "future")
    )
    await producer.schedule(
        jobs.record, execution_time=now - timedelta(seconds=1), args=(key, "due")
    )
    # This replica's wall clock runs an hour ahead; it must not matter.
    skewed = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: skewed)
    async with make_scheduler(tasks=[jobs.record]) as scheduler:
        await wait_until(lambda: holds(bool(jobs.calls(key))))
        await scheduler._started().dispatcher.run_once()
    assert [c["value"] for c in jobs.calls(key)] == ["due"]


async def test_replace_of_a_finished_job_runs_it_again(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        await scheduler.schedule(jobs.record, args=(key, 1), job_id="again")
        assert await finished(scheduler, "again") is JobStatus.SUCCEEDED
        await scheduler.schedule(
            jobs.record,
            args=(key, 2),
            job_id="again",
            conflict_resolution=ConflictResolution.IGNORE,
        )
        await scheduler.schedule(
            jobs.record,
            args=(key, 3),
            job_id="again",
            conflict_resolution=ConflictResolution.REPLACE,
        )
        await wait_until(lambda: holds(len(jobs.calls(key)) == 2))
        assert await finished(scheduler, "again") is JobStatus.SUCCEEDED
    assert [c["value"] for c in jobs.calls(key)] == [1, 3]
