"""Job results and wait_for_job (issue 12 item 1)."""

from __future__ import annotations

import math
from datetime import timedelta

import anyio
import pytest

from scheduler import JobNotFoundError, JobStatus, JobWaitTimeoutError, waiting
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import unique_schema


async def test_a_job_s_return_value_is_stored_and_shown_by_get_job(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    value = {"rows": [1, 2.5, "three", None, True], "nested": {"ok": False}}
    async with make_scheduler() as scheduler:
        async_id = await scheduler.schedule(jobs.give_back, args=(value,))
        sync_id = await scheduler.schedule(jobs.give_back_sync, args=(["from", "a", "thread"],))
        none_id = await scheduler.schedule(jobs.give_back, args=(None,))
        finished = [
            await scheduler.wait_for_job(i, timeout=30) for i in (async_id, sync_id, none_id)
        ]
    assert [job.status for job in finished] == [JobStatus.SUCCEEDED] * 3
    assert finished[0].result == value
    assert finished[1].result == ["from", "a", "thread"]
    assert finished[2].result is None
    stored = await scheduler.get_job(async_id)
    assert stored is not None and stored.result == value


@pytest.mark.parametrize(("kind", "fragment"), [("object", "is a object"), ("big", "over the cap")])
async def test_a_return_value_that_cannot_be_stored_fails_the_attempt_with_a_clear_error(
    migrated: str, make_scheduler: SchedulerFactory, kind: str, fragment: str
) -> None:
    async with make_scheduler(max_result_bytes=1000) as scheduler:
        job_id = await scheduler.schedule(jobs.return_unstorable, args=(kind,), max_retries=1)
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None
    assert "the job returned a value that cannot be stored" in job.last_error
    assert fragment in job.last_error
    assert (job.attempts, job.failures) == (2, 2)  # spent its retry like any failure
    assert job.result is None


async def test_wait_for_job_returns_failed_and_cancelled_jobs_too(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        failing = await scheduler.schedule(jobs.always_fail, args=(key,))
        later = await scheduler.schedule(jobs.record, args=(key,), delay=3600)
        await scheduler.cancel_job(later)
        failed = await scheduler.wait_for_job(failing, timeout=30)
        cancelled = await scheduler.wait_for_job(later, timeout=timedelta(seconds=30))
    assert failed.status is JobStatus.FAILED and "always fails" in (failed.last_error or "")
    assert cancelled.status is JobStatus.CANCELLED


async def test_wait_for_job_times_out_with_a_typed_error_and_knows_unknown_jobs(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("never",), delay=3600)
    with pytest.raises(JobWaitTimeoutError, match="still pending") as raised:
        await producer.wait_for_job(job_id, timeout=0.3)
    assert raised.value.job_id == job_id
    with pytest.raises(JobNotFoundError, match="no job 'nope'"):
        await producer.wait_for_job("nope", timeout=5)
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING  # waiting changed nothing


@pytest.mark.parametrize("started", [False, True], ids=["producer-only", "started"])
async def test_wait_for_job_is_woken_by_the_notification_not_the_poll(
    migrated: str, make_scheduler: SchedulerFactory, started: bool
) -> None:
    """With the poll backstop out of reach, only the 'finished' NOTIFY can end the wait:
    on a started scheduler through its listener, on a producer through its own LISTEN."""
    worker = make_scheduler(tasks=[jobs.give_back])
    waiter = make_scheduler()
    if started:
        await waiter.start()
    job_id = await waiter.schedule(jobs.give_back, args=(42,), delay=0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.start)
        with anyio.fail_after(30):
            job = await waiting.wait_for_job(
                waiter._store,
                waiter._finished,
                job_id,
                None,
                listening=started,
                poll_interval=math.inf,
            )
    assert job.status is JobStatus.SUCCEEDED and job.result == 42
