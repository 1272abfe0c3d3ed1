"""Issue 19.7 and 19.8: a failed attempt is logged at WARNING (retried) or ERROR (final)
with its task, job, attempt and exception; and an error's type and message are stored
apart from its traceback by every writer, shown in lists while the traceback stays in
`show` and on the job's page."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from scheduler import JobStatus, RetryBackoff
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from tests.conftest import SchedulerFactory
from tests.integration.test_cli import cli
from tests.support import jobs, process_jobs
from tests.support.db import unique_schema

pytestmark = pytest.mark.usefixtures("migrated")


async def test_retries_log_warnings_and_the_final_failure_an_error_with_the_exception(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.runner")
    quick = RetryBackoff(base=0.1, maximum=0.1, jitter=False)
    async with make_scheduler(retry_backoff=quick) as scheduler:
        job_id = await scheduler.schedule(
            jobs.always_fail, args=(unique_schema("k"),), max_retries=1
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    failures = [r for r in caplog.records if r.name == "scheduler.runner" and r.levelno > 20]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.ERROR]
    for attempt, record in enumerate(failures, start=1):
        message = record.getMessage()
        assert job.task_name in message and job_id in message
        assert f"attempt {attempt}" in message
        assert "ValueError: this job always fails" in message
        assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
        assert (record.job_id, record.task_name, record.attempt) == (  # type: ignore[attr-defined]
            job_id,
            job.task_name,
            attempt,
        )
        assert record.error_type == "ValueError"  # type: ignore[attr-defined]
    assert "retry 1 of 1" in failures[0].getMessage()
    assert "no retry left" in failures[1].getMessage()


async def test_a_failure_keeps_type_and_message_apart_from_its_traceback(
    make_scheduler: SchedulerFactory,
) -> None:
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.always_fail, args=(unique_schema("k"),))
        job = await scheduler.wait_for_job(job_id, timeout=30)
        [attempt] = await scheduler.get_attempts(job_id)
    assert job.last_error is not None and job.last_error.startswith("Traceback")
    assert (job.error_type, job.error_message) == ("ValueError", "this job always fails")
    assert (attempt.error_type, attempt.error_message) == ("ValueError", "this job always fails")
    assert attempt.error == job.last_error


async def test_a_process_job_reports_the_exception_its_child_raised(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_scheduler(process_pool_size=1) as scheduler:
        job_id = await scheduler.schedule(process_jobs.fail_loudly, args=("from the child",))
        job = await scheduler.wait_for_job(job_id, timeout=60)
    assert (job.error_type, job.error_message) == ("ValueError", "from the child")
    assert job.last_error is not None and "Traceback" in job.last_error
    [record] = [r for r in caplog.records if r.name == "scheduler.runner"]
    assert record.levelno == logging.ERROR
    assert f"task {job.task_name} job {job_id} attempt 1 failed" in record.getMessage()
    assert "ValueError: from the child" in record.getMessage()
    assert record.exc_info is not None  # the child's traceback is in its message


async def test_a_timeout_is_an_error_without_an_exception_type(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(
            jobs.sleep_then_record, args=(unique_schema("k"), 60), timeout=0.5
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert (job.error_type, job.error_message) == (None, "timed out after 0.5 seconds")
    [record] = [r for r in caplog.records if r.name == "scheduler.runner"]
    assert record.levelno == logging.ERROR and job_id in record.getMessage()
    assert "timed out after 0.5 seconds" in record.getMessage() and record.exc_info is None


async def test_sql_writers_get_the_parts_derived_from_their_text(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """The worker protocol takes an error text from any language: its signature is
    unchanged, and the parts are derived (a Python traceback's exception; else the first
    line). A later success clears them."""
    q = quote_identifier(migrated)
    worker = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY['node:task'], '30 seconds', 'node-host', 1)"
    )
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in run\n'
        "    charge(card)\n"
        "app.errors.PaymentDeclined: card declined\nby the bank"
    )
    texts = {
        "python": traceback,
        "java": "java.lang.IllegalStateException: no stock\n\tat Shop.buy(Shop.java:3)",
        "plain": "connection refused",
    }
    for name in texts:
        await pool.execute(f"SELECT {q}.schedule_job('node:task', job_id => $1)", name)
    await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 3)", worker)
    for name, text in texts.items():
        assert await pool.fetchval(f"SELECT {q}.fail_job($1, $2, 1, $3)", worker, name, text)
    rows = {
        r["job_id"]: r
        for r in await pool.fetch(f"SELECT job_id, error_type, error_message FROM {q}.jobs")
    }
    assert (rows["python"]["error_type"], rows["python"]["error_message"]) == (
        "app.errors.PaymentDeclined",
        "card declined\nby the bank",
    )
    assert (rows["java"]["error_type"], rows["java"]["error_message"]) == (
        None,
        "java.lang.IllegalStateException: no stock",
    )
    assert (rows["plain"]["error_type"], rows["plain"]["error_message"]) == (
        None,
        "connection refused",
    )
    history = await pool.fetchrow(
        f"SELECT error_type, error_message FROM {q}.attempt_history WHERE job_id = 'python'"
    )
    assert history is not None and tuple(history) == (
        "app.errors.PaymentDeclined",
        "card declined\nby the bank",
    )
    # The text changed by hand (an operator's note): the parts follow it; no text, no parts.
    await pool.execute(f"UPDATE {q}.jobs SET last_error = 'noted' WHERE job_id = 'python'")
    noted = await pool.fetchrow(
        f"SELECT error_type, error_message FROM {q}.jobs WHERE job_id = 'python'"
    )
    assert noted is not None and tuple(noted) == (None, "noted")
    await pool.execute(f"UPDATE {q}.jobs SET last_error = NULL WHERE job_id = 'python'")
    cleared = await pool.fetchrow(
        f"SELECT error_type, error_message FROM {q}.jobs WHERE job_id = 'python'"
    )
    assert cleared is not None and tuple(cleared) == (None, None)


async def test_the_cli_lists_the_message_and_show_keeps_the_traceback(
    make_scheduler: SchedulerFactory, migrated: str
) -> None:
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.always_fail, args=(unique_schema("k"),))
        await scheduler.wait_for_job(job_id, timeout=30)
    listed = cli("jobs", "--status", "failed", schema=migrated)
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if job_id in line]
    assert "ValueError: this job always fails" in line and "Traceback" not in line
    shown = cli("show", job_id, schema=migrated)
    assert "Traceback (most recent call last)" in shown.stdout
    assert '"error_message": "this job always fails"' in shown.stdout


async def test_the_orphan_sweep_logs_the_task_and_gives_its_reason_as_the_message(
    pool: asyncpg.Pool, migrated: str, caplog: pytest.LogCaptureFixture
) -> None:
    q = quote_identifier(migrated)
    worker = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY['node:task'], '30 seconds', 'node-host', 1)"
    )
    await pool.execute(f"SELECT {q}.schedule_job('node:task', job_id => 'orphan')")
    await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1)", worker)
    await pool.execute(f"UPDATE {q}.workers SET lease_expires_at = now() - interval '1 second'")
    assert await PostgresJobStore(pool, migrated).reap_orphans(10, orphan_retries=0) == 1
    [record] = [r for r in caplog.records if r.name == "scheduler.store"]
    assert record.levelno == logging.ERROR
    assert "task node:task job orphan attempt 1 lost its lease" in record.getMessage()
    row = await pool.fetchrow(
        f"SELECT status, error_type, error_message FROM {q}.jobs WHERE job_id = 'orphan'"
    )
    assert row is not None and (row["status"], row["error_type"]) == ("failed", None)
    assert row["error_message"] == f"attempt 1 lost its lease: worker {worker} stopped heartbeating"
