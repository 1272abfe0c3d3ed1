"""The seed README's Quick Start runs as written against the real database."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from scheduler import JobPriority, JobStatus, Scheduler
from tests.support.db import TEST_DSN
from tests.support.processes import ROOT


def _run_quickstart(schema: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCHEDULER_DSN": TEST_DSN, "SCHEDULER_SCHEMA": schema},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def test_the_seed_quick_start_runs_and_runs_again(pool: asyncpg.Pool, schema: str) -> None:
    """Issue 19.11: a second run died on the fixed job id, and the first showed nothing
    running."""
    _run_quickstart(schema)
    lines = _run_quickstart(schema)
    # The job due now runs during the run: its own prints interleave with the script's.
    job_output = [line for line in lines if line.startswith(("📧", "✅"))]
    assert job_output == [
        "📧 Sending email to now@example.com: Hello!",
        "✅ Email sent to now@example.com",
    ]
    lines = [line for line in lines if line not in job_output]
    now_job = lines[0].removeprefix("Scheduled email job due now: ")
    email_job = lines[1].removeprefix("Scheduled email job: ")
    assert lines[2:] == [
        "Scheduled report job: monthly-report-2024-08",
        "Duplicate job ignored: monthly-report-2024-08",
        f"Job {email_job} cancelled successfully",
        "Job replaced: monthly-report-2024-08",
        f"Job {now_job} succeeded",
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
    # Two runs: each a job due now (succeeded) and a cancelled email; one report job.
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 5
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".workers') == 0
