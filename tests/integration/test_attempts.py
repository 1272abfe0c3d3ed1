"""Attempt history (issue 12 item 2): every attempt is kept with how it ended, written by
the statement that records the outcome, visible through get_attempts(), the CLI and SQL,
and deleted with its job."""

from __future__ import annotations

import json
import socket
import uuid
from functools import partial

import asyncpg
import pytest

from scheduler import AttemptOutcome, JobStatus
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from tests.conftest import SchedulerFactory
from tests.integration.test_cli import cli
from tests.support import jobs
from tests.support.db import has_status, holds, unique_schema, wait_until

TASK = "tests.support.jobs:record"


async def outcomes(scheduler: object, job_id: str) -> list[AttemptOutcome]:
    return [a.outcome for a in await scheduler.get_attempts(job_id)]  # type: ignore[attr-defined]


async def test_failures_then_a_success_are_each_kept_with_worker_host_and_times(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.fail_first, args=(key, 2), max_retries=2)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        worker = scheduler.worker_id
    assert job.status is JobStatus.SUCCEEDED
    history = await scheduler.get_attempts(job_id)
    assert [a.attempt for a in history] == [1, 2, 3]
    assert [a.outcome for a in history] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.FAILED,
        AttemptOutcome.SUCCEEDED,
    ]
    for entry, number in zip(history[:2], (1, 2), strict=True):
        assert entry.error is not None
        assert entry.error.endswith(f"RuntimeError: planned failure {number}")
    assert history[2].error is None
    for entry in history:
        assert entry.worker_id == worker and entry.hostname == socket.gethostname()
        assert entry.claimed_at is not None and entry.started_at is not None
        assert entry.claimed_at <= entry.started_at <= entry.finished_at
    assert history[0].finished_at <= history[1].claimed_at  # type: ignore[operator]
    assert job.last_error is None  # the job row keeps the latest only; the history keeps all


async def test_timeouts_cancellations_and_shutdown_releases_are_told_apart(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    first = make_scheduler()
    async with first:
        timing_out = await first.schedule(jobs.wait_forever, args=(key,), timeout=0.2)
        cancelled = await first.schedule(jobs.wait_forever, args=(key,))
        released = await first.schedule(jobs.wait_forever, args=(key,))
        await wait_until(lambda: holds(len(jobs.calls(key, event="started")) >= 3))
        assert await first.cancel_job(cancelled)
        await first.wait_for_job(timing_out, timeout=30)
        await first.shutdown(grace=0)
    assert await outcomes(first, timing_out) == [AttemptOutcome.TIMED_OUT]
    assert await outcomes(first, cancelled) == [AttemptOutcome.CANCELLED]
    assert await outcomes(first, released) == [AttemptOutcome.RELEASED]
    [entry] = await first.get_attempts(timing_out)
    assert entry.error == "timed out after 0.2 seconds"
    job = await first.get_job(released)
    assert job is not None and job.status is JobStatus.PENDING


async def test_lost_leases_and_handed_back_attempts_are_kept(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    store = PostgresJobStore(pool, migrated)
    producer = make_scheduler()
    reaped_id = await producer.schedule(jobs.record, args=("k",), max_retries=3)
    dead, alive = uuid.uuid4(), uuid.uuid4()
    await store.register_worker(dead, "dead-host", 1, [TASK], lease_time=30)
    await store.register_worker(alive, "live-host", 2, [TASK], lease_time=30)
    [claimed] = (await store.claim_jobs(dead, [TASK], 10)).claimed
    await pool.execute(
        f"UPDATE {quote_identifier(migrated)}.workers"
        " SET lease_expires_at = now() - interval '1 second' WHERE worker_id = $1",
        dead,
    )
    assert await store.reap_orphans(100, 2) == 1
    [again] = (await store.claim_jobs(alive, [TASK], 10)).claimed
    assert await store.reclaim_attempts(alive, [(reaped_id, again.lease.attempt)], 2) == 1
    history = await producer.get_attempts(reaped_id)
    assert [(a.attempt, a.outcome, a.worker_id, a.hostname) for a in history] == [
        (1, AttemptOutcome.LEASE_LOST, dead, "dead-host"),
        (2, AttemptOutcome.HANDED_BACK, alive, "live-host"),
    ]
    assert history[0].error is not None and "lost its lease" in history[0].error
    assert claimed.lease.attempt == 1


async def test_history_is_written_by_sql_workers_readable_in_sql_and_pruned_with_its_job(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("k",), max_retries=1)
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1], hostname => 'node')", TASK)
    [row] = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1)", worker)
    assert await pool.fetchval(f"SELECT {q}.fail_job($1, $2, 1, 'boom')", worker, job_id)
    await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1)", worker)
    assert await pool.fetchval(f"SELECT {q}.complete_job($1, $2, 2)", worker, job_id)
    viewed = await pool.fetch(
        f"SELECT attempt, outcome, error, hostname, task_name FROM {q}.attempt_history"
        " WHERE job_id = $1 ORDER BY attempt",
        job_id,
    )
    assert [tuple(r) for r in viewed] == [
        (1, "failed", "boom", "node", TASK),
        (2, "succeeded", None, "node", TASK),
    ]
    assert row["attempt"] == 1

    store = PostgresJobStore(pool, migrated)
    assert await store.prune_finished_jobs(0, 100) == 1
    left = await pool.fetchval(f"SELECT count(*) FROM {q}.job_attempts WHERE job_id = $1", job_id)
    assert left == 0


@pytest.mark.parametrize("command", ["show", "attempts"])
async def test_the_cli_shows_the_history(
    migrated: str, make_scheduler: SchedulerFactory, command: str
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.fail_first, args=(key, 1), max_retries=1)
        await wait_until(partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED))
    if command == "show":
        shown = json.loads(cli("show", job_id, schema=migrated).stdout)
        assert [a["outcome"] for a in shown["attempt_history"]] == ["failed", "succeeded"]
    else:
        listed = cli("attempts", job_id, schema=migrated).stdout.splitlines()
        assert listed[0].startswith("#1  failed") and "planned failure 1" in listed[0]
        assert listed[1].startswith("#2  succeeded")
