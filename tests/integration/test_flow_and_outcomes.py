"""Where flow control (issue 11) meets outcomes and workflows (issue 12): the limit-aware
claim records results and attempt history like the plain one, a blocked job holds its
unique key, and a retry never gives a unique key a second unfinished holder."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from scheduler import (
    AttemptOutcome,
    JobNotRetryableError,
    JobStatus,
    UniqueKeyConflictError,
)
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from tests.conftest import SchedulerFactory
from tests.support import jobs

TASK = "tests.support.jobs:record"


async def test_the_flow_claim_records_results_and_history_like_the_plain_claim(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    await store.register_worker(owner, "flow-host", 1, [TASK], 30, ["default"])
    job_id = await pool.fetchval(
        f"INSERT INTO {q}.jobs (task_name) VALUES ($1) RETURNING job_id", TASK
    )
    rows = await pool.fetch(
        store.q.claim_flow_jobs, owner, [TASK], ["default"], 5, 0.0, [], [], [], []
    )
    assert [(r["kind"], r["job_id"]) for r in rows if r["kind"] == "claimed"] == [
        ("claimed", job_id)
    ]
    claimed_at = await pool.fetchval(f"SELECT claimed_at FROM {q}.jobs WHERE job_id = $1", job_id)
    assert claimed_at is not None

    rows = await pool.fetch(
        store.q.claim_flow_jobs,
        owner,
        [TASK],
        ["default"],
        0,
        0.0,
        [job_id],
        [owner],
        [1],
        ['{"answer": 42}'],
    )
    assert [r["job_id"] for r in rows if r["kind"] == "completed"] == [job_id]
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.result == {"answer": 42}
    [attempt] = await store.get_attempts(job_id)
    assert (attempt.outcome, attempt.hostname) == (AttemptOutcome.SUCCEEDED, "flow-host")
    assert attempt.claimed_at is not None


async def test_a_limited_queue_s_jobs_return_results_with_their_history(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    async with make_scheduler() as scheduler:
        await scheduler.set_queue_limits("default", concurrency_limit=2)
        ids = [await scheduler.schedule(jobs.give_back, args=(n,)) for n in range(5)]
        finished = [await scheduler.wait_for_job(i, timeout=30) for i in ids]
    assert [job.result for job in finished] == list(range(5))
    for job_id in ids:
        [attempt] = await scheduler.get_attempts(job_id)
        assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.claimed_at is not None


async def test_a_foreign_worker_s_limit_aware_claim_stamps_claimed_at(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    producer = make_scheduler()
    await producer.set_queue_limits("default", concurrency_limit=1)
    job_id = await producer.schedule(jobs.record, args=("k",))
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1], hostname => 'node')", TASK)
    [row] = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 5)", worker)
    assert row["job_id"] == job_id
    assert await pool.fetchval(f"SELECT {q}.complete_job($1, $2, 1)", worker, job_id)
    [attempt] = await producer.get_attempts(job_id)
    assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.claimed_at is not None


async def test_a_job_blocked_on_its_dependencies_holds_its_unique_key(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()  # not started: nothing runs, the dependency stays pending
    first = await scheduler.schedule(jobs.record, args=("a",))
    blocked = await scheduler.schedule(jobs.record, args=("b",), depends_on=[first], unique_key="u")
    job = await scheduler.get_job(blocked)
    assert job is not None and job.status is JobStatus.BLOCKED
    with pytest.raises(UniqueKeyConflictError) as refused:
        await scheduler.schedule(jobs.record, args=("c",), unique_key="u")
    assert refused.value.job_id == blocked


async def test_a_failed_job_whose_unique_key_was_taken_again_is_not_retried(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    scheduler = make_scheduler()
    failed = await scheduler.schedule(jobs.record, args=("old",), unique_key="u")
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', finished_at = now() WHERE job_id = $1", failed
    )
    holder = await scheduler.schedule(jobs.record, args=("new",), unique_key="u")
    with pytest.raises(JobNotRetryableError, match="unique_key"):
        await scheduler.retry_job(failed)
    assert await scheduler.retry_failed_jobs() == 0  # skipped, not an error
    rows = await pool.fetch(f"SELECT job_id, status FROM {q}.jobs")
    assert {r["job_id"]: r["status"] for r in rows} == {failed: "failed", holder: "pending"}

    # Two failed jobs of one free key: one bulk retry takes the older, skips the newer.
    older = await scheduler.schedule(jobs.record, args=("1",), unique_key="w")
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', finished_at = now() WHERE job_id = $1", older
    )
    newer = await scheduler.schedule(jobs.record, args=("2",), unique_key="w")
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', finished_at = now() WHERE job_id = $1", newer
    )
    assert await scheduler.retry_failed_jobs() == 1
    rows = await pool.fetch(f"SELECT job_id, status FROM {q}.jobs WHERE unique_key = 'w'")
    assert {r["job_id"]: r["status"] for r in rows} == {older: "pending", newer: "failed"}
