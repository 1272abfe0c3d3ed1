"""Synchronous jobs run in threads, which cannot be interrupted: they see a stop request
through current_job() and stop cooperatively (issue 9 item 7)."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from scheduler import JobStatus, Scheduler
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, holds, unique_schema, wait_until


async def test_a_sync_job_that_checks_is_timed_out(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(
            jobs.sync_until_cancelled, args=(key, 30.0), timeout=0.3, max_retries=0
        )
        await wait_until(lambda: has_status(scheduler, job_id, JobStatus.FAILED))
    job = await scheduler.get_job(job_id)
    assert job is not None and job.last_error == "timed out after 0.3 seconds"
    assert not jobs.calls(key, event="finished")


async def test_cancelling_a_running_sync_job_that_checks(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.sync_until_cancelled, args=(key, 30.0))
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        assert await scheduler.cancel_job(job_id) is True
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert not jobs.calls(key, event="finished")


async def test_a_sync_job_that_returns_when_asked_keeps_its_real_outcome(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """It stopped early but returned normally: that is a success, and it saw why."""
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.sync_polls_then_returns, args=(key, 30.0))
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        assert await scheduler.cancel_job(job_id) is False  # it completed
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    [saw] = jobs.calls(key, event="saw the request")
    assert saw["reason"] == "cancelled on request while running"


def test_registering_a_sync_task_with_a_timeout_says_it_is_cooperative(
    caplog: pytest.LogCaptureFixture, pool: asyncpg.Pool
) -> None:
    scheduler = Scheduler(pool)
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        scheduler.register(jobs.sync_until_cancelled, timeout=5)
    assert any("cooperative" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        scheduler.register(jobs.record, timeout=5)  # async: enforced, nothing to say
    assert not caplog.records
