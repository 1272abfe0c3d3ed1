"""Graceful shutdown: stop claiming, drain while heartbeating, release the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from scheduler import (
    JobRequest,
    JobStatus,
    SchedulerAlreadyRunningError,
    SchedulerNotRunningError,
    SchedulerState,
    SchedulerStoppedError,
)
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, holds, unique_schema, wait_until
from tests.support.processes import ROOT


async def test_jobs_finishing_within_the_grace_period_complete(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    scheduler = make_scheduler()
    await scheduler.start()
    job_id = await scheduler.schedule(jobs.sleep_then_record, args=(key, 0.5))
    await wait_until(lambda: holds(jobs.calls(key, event="started")))
    await scheduler.shutdown(grace=10)
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    workers = await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(migrated)}.workers")
    assert workers == 0  # it left cleanly


async def test_shutdown_mid_backlog_records_every_job_that_ran(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Under a backlog a finished job's success waits for the next claim to carry it, and
    a slot frees before the write. Shutdown stops claiming: every job that ran must still
    be recorded succeeded (never left running, to be run again after its lease)."""
    key = unique_schema("k")
    scheduler = make_scheduler()
    ids = await scheduler.schedule_many(
        JobRequest(jobs.record, args=(key,), job_id=f"{key}-{n}") for n in range(3000)
    )
    await scheduler.start()
    await wait_until(lambda: holds(len(jobs.calls(key)) >= 300), message="a backlog running")
    await scheduler.shutdown(grace=10)
    rows = await pool.fetch(
        f"SELECT job_id, status FROM {quote_identifier(migrated)}.jobs WHERE job_id = ANY($1)",
        ids,
    )
    ran = {call["job_id"] for call in jobs.calls(key)}
    succeeded = {r["job_id"] for r in rows if r["status"] == "succeeded"}
    assert ran == succeeded
    assert {r["status"] for r in rows} <= {"succeeded", "pending"}
    assert len(ran) < len(ids), "shutdown came while the backlog lasted"


async def test_draining_keeps_the_lease_so_no_peer_starts_the_job(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    draining = make_scheduler(lease_time=1.0, heartbeat_interval=0.2)
    await draining.start()
    async with make_scheduler(tasks=[jobs.sleep_then_record]):
        job_id = await draining.schedule(jobs.sleep_then_record, args=(key, 2.5))
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        await draining.shutdown(grace=10)  # the job outlives the lease 2.5 times
    job = await draining.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempts == 1
    assert [c["event"] for c in jobs.calls(key)] == ["started", "finished"]


async def test_jobs_still_running_after_the_grace_period_are_released_to_peers(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    leaving = make_scheduler()
    await leaving.start()
    job_id = await leaving.schedule(jobs.sleep_then_record, args=(key, 1.0), max_retries=0)
    await wait_until(lambda: holds(jobs.calls(key, event="started")))
    await leaving.shutdown(grace=0.1)
    job = await leaving.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    # The interrupted attempt spent no budget; its number stays used (tokens never repeat).
    assert (job.attempts, job.failures, job.lost_leases) == (1, 0, 0)
    assert job.last_error is not None and "shut down" in job.last_error
    async with make_scheduler(tasks=[jobs.sleep_then_record]) as peer:
        await wait_until(lambda: holds(jobs.calls(key, event="finished")))
        await wait_until(lambda: has_status(peer, job_id, JobStatus.SUCCEEDED))
    assert [c["event"] for c in jobs.calls(key)] == ["started", "started", "finished"]


async def test_shutdown_is_idempotent_and_start_cannot_be_repeated(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.shutdown()  # never started: nothing to do
    fresh = make_scheduler()
    await fresh.start()
    await fresh.shutdown()
    await fresh.shutdown()
    with pytest.raises(SchedulerNotRunningError, match="create a new Scheduler"):
        await fresh.start()
    with pytest.raises(SchedulerStoppedError, match="after shutdown"):
        await fresh.start()


async def test_a_second_signal_stops_a_draining_worker_at_once_and_hands_its_job_back(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Issue 19 item 10: the first Ctrl-C drains for up to the grace (here two minutes);
    the second stops now, as the grace expiring would."""
    marker = tmp_path / "started.txt"
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "scheduler", "--dsn", TEST_DSN, "--schema", migrated),
                *("worker", "--import", "tests.support.drain_tasks", "--shutdown-grace", "120"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        producer = make_scheduler()
        job_id = await producer.schedule("drain-test:run-long", args=(str(marker),))
        await wait_until(lambda: holds(marker.exists()), timeout=30, message="the job started")
        worker.send_signal(signal.SIGINT)
        await wait_until(
            lambda: holds("draining 1 running job" in log_path.read_text()),
            message="the worker draining",
        )
        assert worker.poll() is None  # draining: it would wait up to the grace
        worker.send_signal(signal.SIGINT)
        assert await anyio.to_thread.run_sync(lambda: worker.wait(timeout=30)) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "second signal" in log_path.read_text()
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING  # handed back, not running
    assert job.last_error is not None and "shut down" in job.last_error
    workers = await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(migrated)}.workers")
    assert workers == 0


async def test_start_twice_says_already_running_with_its_own_type(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Issue 19.11: it raised SchedulerNotRunningError saying "already running"."""
    async with make_scheduler() as scheduler:
        with pytest.raises(SchedulerAlreadyRunningError, match="already running") as raised:
            await scheduler.start()
        assert not isinstance(raised.value, SchedulerNotRunningError)
        assert scheduler.state is SchedulerState.RUNNING
