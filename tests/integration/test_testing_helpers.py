"""scheduler.testing: asserting on enqueued jobs, running what is due, and the virtual
clock for schedules and later jobs, against a real scheduler and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import timedelta

import asyncpg
import pytest

from scheduler import IntervalTrigger, JobStatus, RetryBackoff, SchedulerNotRunningError, testing
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, wait_until


async def test_enqueued_lists_waiting_jobs_without_running_them(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    later = await scheduler.schedule(jobs.record, args=("k", 2), delay=60)
    first = await scheduler.schedule(jobs.record, args=("k", 1))
    await scheduler.schedule(jobs.record_sync, args=("other",), queue="mail")
    waiting = await testing.enqueued(scheduler, jobs.record)
    assert [job.job_id for job in waiting] == [first, later]
    assert all(job.status is JobStatus.PENDING for job in waiting)
    assert [j.args for j in await testing.enqueued(scheduler, queue="mail")] == [("other",)]
    found = await testing.assert_enqueued(scheduler, jobs.record, args=["k", 2])
    assert found.job_id == later
    with pytest.raises(AssertionError, match=r"found 0; waiting: tests\.support\.jobs:record"):
        await testing.assert_enqueued(scheduler, jobs.record, args=["k", 3])
    with pytest.raises(AssertionError, match="found 2"):
        await testing.assert_enqueued(scheduler, jobs.record)


async def test_run_due_runs_what_is_due_to_completion_and_leaves_the_future(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    jobs.CALLS.pop("due", None)
    scheduler = make_scheduler(tasks=[jobs.record, jobs.always_fail], poll_interval=3600)
    await scheduler.start()
    now_ids = [await scheduler.schedule(jobs.record, args=("due", i)) for i in range(3)]
    failing = await scheduler.schedule(jobs.always_fail, args=("due-fail",))
    later = await scheduler.schedule(jobs.record, args=("due", "later"), delay=3600)
    finished = await testing.run_due(scheduler)
    assert {job.job_id for job in finished} == {*now_ids, failing}
    statuses = {job.job_id: job.status for job in finished}
    assert statuses[failing] is JobStatus.FAILED
    assert all(statuses[job_id] is JobStatus.SUCCEEDED for job_id in now_ids)
    assert sorted(call["value"] for call in jobs.CALLS["due"]) == [0, 1, 2]
    job = await scheduler.get_job(later)
    assert job is not None and job.status is JobStatus.PENDING


async def test_advance_runs_later_jobs_and_retries_that_fall_due(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    jobs.CALLS.pop("retry", None)
    # The fixture's backoff (under 0.2 s) lets the retry fall due while run_due() still
    # polls on a loaded machine: 30 s keeps it waiting until advance() moves the clock.
    scheduler = make_scheduler(
        tasks=[jobs.record, jobs.fail_first],
        poll_interval=3600,
        retry_backoff=RetryBackoff(base=30, maximum=30, jitter=False),
    )
    await scheduler.start()
    retried = await scheduler.schedule(jobs.fail_first, args=("retry", 1), max_retries=1)
    tomorrow = await scheduler.schedule(jobs.record, args=("retry", "t"), delay=86400)
    await testing.run_due(scheduler)
    job = await scheduler.get_job(retried)
    assert job is not None and job.status is JobStatus.PENDING  # its retry waits
    assert [j.job_id for j in await testing.advance(scheduler, timedelta(minutes=1))] == [retried]
    assert (await testing.assert_enqueued(scheduler, jobs.record)).job_id == tomorrow
    finished = await testing.advance(scheduler, timedelta(days=1))
    assert [j.job_id for j in finished] == [tomorrow]
    assert finished[0].status is JobStatus.SUCCEEDED


async def test_advance_fires_each_schedule_slot_at_its_own_time(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    jobs.CALLS.pop("every-10", None)
    scheduler = make_scheduler(tasks=[jobs.record], poll_interval=3600)
    await scheduler.start()
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(minutes=10), schedule_id="tick", args=("every-10",)
    )
    start = await testing.now(scheduler)
    finished = await testing.advance(scheduler, timedelta(hours=1))
    # Six slots in the hour, each run before the next fired (max_running=1 would otherwise
    # have skipped slots, and coalescing would have merged them into one).
    assert len(finished) == 6
    assert all(job.status is JobStatus.SUCCEEDED for job in finished)
    fire_times = [
        row["fire_time"]
        for row in await pool.fetch(
            f'SELECT fire_time FROM "{migrated}".jobs WHERE schedule_id = $1 ORDER BY 1', "tick"
        )
    ]
    assert len(fire_times) == 6
    gaps = {b - a for a, b in itertools.pairwise(fire_times)}
    assert gaps == {timedelta(minutes=10)}
    assert start < fire_times[0] <= start + timedelta(minutes=10)
    assert await testing.now(scheduler) - start >= timedelta(hours=1)
    schedule = await scheduler.get_schedule("tick")
    assert schedule is not None and schedule.next_fire_time is not None
    assert schedule.next_fire_time == fire_times[-1] + timedelta(minutes=10)
    # Advancing again goes on from the virtual now, not from the real one.
    assert len(await testing.advance(scheduler, timedelta(minutes=30))) == 3


async def test_run_due_needs_a_started_scheduler_and_names_what_is_stuck(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    idle = make_scheduler(tasks=[jobs.record])
    with pytest.raises(SchedulerNotRunningError, match="async with scheduler"):
        await testing.run_due(idle)
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.start()
    await scheduler.pause_queue("default")
    stuck = await scheduler.schedule(jobs.record, args=("stuck",))
    with pytest.raises(AssertionError, match=f"{stuck} \\(pending\\)"):
        await testing.run_due(scheduler, timeout=0.5)


async def test_run_due_returns_jobs_the_background_ran_before_it_was_called(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.start()
    early = await scheduler.schedule(jobs.record, args=("early",))
    await wait_until(lambda: has_status(scheduler, early, JobStatus.SUCCEEDED))
    assert [job.job_id for job in await testing.run_due(scheduler)] == [early]
    # The next call reports only what finished after the previous one.
    late = await scheduler.schedule(jobs.record, args=("late",))
    assert [job.job_id for job in await testing.run_due(scheduler)] == [late]
