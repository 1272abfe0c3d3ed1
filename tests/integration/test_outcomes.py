"""Recording an outcome always finishes (issue 9 item 3), and shutdown returns within its
bound whatever the jobs do."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from scheduler import JobStatus
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, holds, unique_schema, wait_until


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("nul", "bad\\x00byte"),
        ("surrogate", "lone \\ud800 surrogate"),
        ("unprintable", "<exception str() failed>"),
        ("huge", "characters cut"),
    ],
)
async def test_a_failure_whose_text_cannot_be_stored_as_is_is_still_recorded(
    migrated: str, make_scheduler: SchedulerFactory, kind: str, fragment: str
) -> None:
    scheduler = make_scheduler()
    with anyio.fail_after(30):  # today's bug: the write retried forever, shutdown hung
        async with scheduler:
            job_id = await scheduler.schedule(jobs.raise_unstorable, args=(kind,), max_retries=1)
            await wait_until(lambda: has_status(scheduler, job_id, JobStatus.FAILED))
    job = await scheduler.get_job(job_id)
    assert job is not None and job.last_error is not None
    assert fragment in job.last_error
    assert len(job.last_error) < 10_000
    assert (job.attempts, job.failures) == (2, 2)  # retried once, like any failure


async def test_shutdown_returns_in_bounded_time_whatever_the_jobs_do(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A coroutine that swallows every cancellation and a thread that never checks: both
    are abandoned after the grace period plus SHUTDOWN_BOUND; their leases then lapse
    (the worker row stays until then) and a peer runs them again."""
    key = unique_schema("k")
    stubborn, blocked = f"{key}-async", f"{key}-thread"
    leaving = make_scheduler(lease_time=2.0)
    await leaving.start()
    first = await leaving.schedule(jobs.ignore_cancellation, args=(stubborn,))
    second = await leaving.schedule(jobs.block_thread, args=(blocked,))
    await wait_until(lambda: holds(jobs.calls(stubborn) and jobs.calls(blocked)))
    try:
        with anyio.fail_after(0.5 + 5.0 + 5.0):  # grace + SHUTDOWN_BOUND + slack
            await leaving.shutdown(grace=0.5)
        assert jobs.calls(stubborn, event="swallowed a cancellation")
        # Nothing was written for them: they stay running until the lease lapses.
        for job_id in (first, second):
            assert await has_status(leaving, job_id, JobStatus.RUNNING)
    finally:
        jobs.release(stubborn)
        jobs.release(blocked)
    # A peer takes them over once the abandoned attempts' lease lapsed.
    async with make_scheduler(tasks=[jobs.ignore_cancellation, jobs.block_thread]) as peer:
        for job_id in (first, second):
            await wait_until(partial(has_status, peer, job_id, JobStatus.SUCCEEDED), timeout=20)
    for job_id in (first, second):
        job = await peer.get_job(job_id)
        assert job is not None and (job.attempts, job.lost_leases) == (2, 1)
