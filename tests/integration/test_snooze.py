"""Snooze (issue 12 item 4): a running job asks to run again later; no failure is
counted, the history says `snoozed`."""

from __future__ import annotations

import itertools
from datetime import timedelta

from scheduler import AttemptOutcome, JobStatus
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import unique_schema


async def test_a_snoozed_job_runs_again_later_without_spending_a_retry(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(
            jobs.snooze_until_attempt, args=(key, 3, 0.3), max_retries=0
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, 3)
    assert (job.attempts, job.failures, job.lost_leases) == (3, 0, 0)
    history = await scheduler.get_attempts(job_id)
    assert [a.outcome for a in history] == [
        AttemptOutcome.SNOOZED,
        AttemptOutcome.SNOOZED,
        AttemptOutcome.SUCCEEDED,
    ]
    assert history[0].error == "snoozed for 0.3 seconds"
    for snoozed, following in itertools.pairwise(history):  # never woken early
        assert following.started_at is not None
        assert following.started_at - snoozed.finished_at >= timedelta(seconds=0.3)


async def test_a_thread_snoozes_through_current_job(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.snooze_once_sync, args=(key, 0.05))
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert (job.status, job.result, job.failures) == (JobStatus.SUCCEEDED, "woke up", 0)
    outcomes = [a.outcome for a in await scheduler.get_attempts(job_id)]
    assert outcomes == [AttemptOutcome.SNOOZED, AttemptOutcome.SUCCEEDED]
