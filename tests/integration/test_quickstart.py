"""The seed README's Quick Start runs as written against the real database."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from scheduler import JobPriority, JobStatus, Scheduler
from tests.support.db import TEST_DSN
from tests.support.processes import ROOT


async def test_the_seed_quick_start_runs_as_written(pool: asyncpg.Pool, schema: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCHEDULER_DSN": TEST_DSN, "SCHEDULER_SCHEMA": schema},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    email_job = lines[0].removeprefix("Scheduled email job: ")
    assert lines[1:] == [
        "Scheduled report job: monthly-report-2024-08",
        "Duplicate job ignored: monthly-report-2024-08",
        f"Job {email_job} cancelled successfully",
        "Job replaced: monthly-report-2024-08",
    ]
    scheduler = Scheduler(pool, schema=schema)
    cancelled = await scheduler.get_job(email_job)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    report = await scheduler.get_job("monthly-report-2024-08")
    assert report is not None
    # IGNORE changed nothing; REPLACE rewrote the job in place with the weekly report.
    assert (report.status, report.args, report.priority, report.max_retries) == (
        JobStatus.PENDING,
        ("weekly", 789),
        JobPriority.NORMAL,
        0,
    )
    assert report.task_name == "__main__:generate_report"
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 2
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".workers') == 0
