"""Issue 19.9: `schedule("myjobs:gret", ...)` (a typo) waited in silence and failed an
hour later. Now a WARNING says, once per task name, that no live worker registered it,
and `scheduler status` and the dashboard show its pending jobs as "no worker for this
task"."""

from __future__ import annotations

import logging

import anyio.to_thread
import asyncpg
import pytest

from scheduler import Scheduler
from scheduler.dashboard.data import DashboardData
from tests.conftest import SchedulerFactory
from tests.integration.test_cli import cli
from tests.support import jobs

pytestmark = pytest.mark.usefixtures("migrated")


def _warnings(caplog: pytest.LogCaptureFixture, task: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and repr(task) in r.getMessage()
    ]


async def test_a_task_no_live_worker_registered_is_warned_about_once_and_shown(
    make_scheduler: SchedulerFactory,
    pool: asyncpg.Pool,
    migrated: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler")
    producer: Scheduler = make_scheduler()
    async with make_scheduler(tasks=[jobs.record]):
        await producer.schedule("myjobs:gret", delay=600)
        await producer.schedule("myjobs:gret", delay=600)
        await producer.schedule_many([])
        await producer.schedule(jobs.record, args=("k",), delay=600)
        [warning] = _warnings(caplog, "myjobs:gret")
        assert "none of the 1 live worker(s) has registered it" in warning
        assert _warnings(caplog, "tests.support.jobs:record") == []

        # In a thread: the worker must go on heartbeating (a 2 s lease) while the CLI runs.
        status = await anyio.to_thread.run_sync(lambda: cli("status", schema=migrated))
        assert status.returncode == 0, status.stderr
        assert "no worker for this task: myjobs:gret (queue default), 2 pending" in status.stdout
        assert "no worker for this task: tests.support.jobs:record" not in status.stdout

        overview = await DashboardData(pool, migrated, cache_seconds=0).overview()
        unserved = {t.name: t.unserved for t in overview.tasks}
        assert unserved["myjobs:gret"] == 2 and unserved["tests.support.jobs:record"] == 0


async def test_a_producer_before_any_worker_is_told_its_jobs_wait(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler")
    producer: Scheduler = make_scheduler()
    await producer.schedule(jobs.record, args=("k",), delay=600)
    [warning] = _warnings(caplog, "tests.support.jobs:record")
    assert "no live worker yet" in warning
