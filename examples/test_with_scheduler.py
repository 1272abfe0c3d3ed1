"""Testing an application's jobs with `scheduler.testing`, against a real test database.

    pytest examples/test_with_scheduler.py

Each test gets a started scheduler on a fresh schema; the helpers assert on what was
enqueued, run what is due to completion, and move a virtual clock for later jobs and
recurring schedules. No sleeping, no mocks of the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from scheduler import CronTrigger, JobStatus, Scheduler, testing

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SENT: list[str] = []


# -- the application's code under test -------------------------------------------------
async def send_welcome(address: str) -> None:
    SENT.append(f"welcome {address}")


async def nightly_report() -> None:
    SENT.append("report")


async def sign_up(scheduler: Scheduler, address: str) -> None:
    await scheduler.schedule(send_welcome, args=[address], delay=timedelta(minutes=10))


# -- the tests -------------------------------------------------------------------------
@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    SENT.clear()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    async with asyncpg.create_pool(DSN, min_size=1, max_size=5) as pool:
        try:
            async with Scheduler(pool, schema=schema, tasks=[send_welcome, nightly_report]) as s:
                yield s
        finally:
            await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_sign_up_sends_a_welcome_mail_ten_minutes_later(scheduler: Scheduler) -> None:
    await sign_up(scheduler, "ada@example.com")
    job = await testing.assert_enqueued(scheduler, send_welcome, args=["ada@example.com"])
    assert await testing.run_due(scheduler) == []  # not due yet
    [done] = await testing.advance(scheduler, timedelta(minutes=10))
    assert (done.job_id, done.status) == (job.job_id, JobStatus.SUCCEEDED)
    assert SENT == ["welcome ada@example.com"]


async def test_the_nightly_report_runs_once_a_day(scheduler: Scheduler) -> None:
    await scheduler.add_schedule(nightly_report, CronTrigger("0 3 * * *"), schedule_id="nightly")
    finished = await testing.advance(scheduler, timedelta(days=2))
    assert [job.status for job in finished] == [JobStatus.SUCCEEDED] * 2
    assert SENT == ["report", "report"]
