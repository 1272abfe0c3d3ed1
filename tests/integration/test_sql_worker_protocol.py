"""The language-neutral worker protocol of migration 0005: register, heartbeat, claim,
complete, fail, release, fenced by (worker, job, attempt) exactly like the Python engine."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import asyncpg
import pytest

from scheduler import JobStatus
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, wait_until

RECORD = "tests.support.jobs:record"
OTHER = "elsewhere:task"


async def schedule(
    pool: asyncpg.Pool, schema: str, job_id: str, task: str = RECORD, **options: object
) -> None:
    named = "".join(f", {name} => ${i + 3}" for i, name in enumerate(options))
    await pool.fetchval(
        f"SELECT {quote_identifier(schema)}.schedule_job($1, job_id => $2{named})",
        task,
        job_id,
        *options.values(),
    )


async def register(pool: asyncpg.Pool, schema: str, lease: str = "30 seconds") -> str:
    q = quote_identifier(schema)
    worker = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY[$1, $2], $3::text::interval, 'node-host', 4242)",
        RECORD,
        OTHER,
        lease,
    )
    return str(worker)


async def claim(pool: asyncpg.Pool, schema: str, worker: str, **options: object) -> list[str]:
    named = "".join(f", {name} => ${i + 2}" for i, name in enumerate(options))
    rows = await pool.fetch(
        f"SELECT * FROM {quote_identifier(schema)}.claim_jobs($1::uuid{named})",
        worker,
        *options.values(),
    )
    return [r["job_id"] for r in rows]


async def job(pool: asyncpg.Pool, schema: str, job_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        f"SELECT * FROM {quote_identifier(schema)}.jobs WHERE job_id = $1", job_id
    )
    assert row is not None
    return row


async def expire(pool: asyncpg.Pool, schema: str, worker: str) -> None:
    await pool.execute(
        f"UPDATE {quote_identifier(schema)}.workers"
        " SET lease_expires_at = now() - interval '1 second' WHERE worker_id = $1",
        worker,
    )


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ("'{}'::text[]", "at least one task"),
        ("ARRAY['rm -rf /']", "may contain only"),
        ("ARRAY['ok:task'], '0 seconds'", "lease must be > 0"),
    ],
)
async def test_register_refuses_bad_input(
    pool: asyncpg.Pool, migrated: str, arguments: str, fragment: str
) -> None:
    q = quote_identifier(migrated)
    with pytest.raises(asyncpg.InvalidParameterValueError, match=fragment):
        await pool.fetchval(f"SELECT {q}.register_worker({arguments})")
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.workers") == 0


async def test_a_heartbeat_extends_a_live_lease_and_never_revives_an_expired_one(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    worker = await register(pool, migrated, "2 seconds")
    assert await pool.fetchval(f"SELECT {q}.worker_heartbeat($1, '1 hour')", worker)
    left = await pool.fetchval(
        f"SELECT lease_expires_at - now() FROM {q}.workers WHERE worker_id = $1", worker
    )
    assert left > timedelta(minutes=59)
    await expire(pool, migrated, worker)
    assert not await pool.fetchval(f"SELECT {q}.worker_heartbeat($1, '1 hour')", worker)
    assert await pool.fetchval(
        f"SELECT lease_expires_at < now() FROM {q}.workers WHERE worker_id = $1", worker
    )


async def test_claims_take_due_jobs_by_priority_then_time_and_count_attempts(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "low", priority=1)
    await schedule(pool, migrated, "normal-old", delay=timedelta(0))
    await schedule(pool, migrated, "normal-new", delay=timedelta(0))
    await pool.execute(
        f"UPDATE {q}.jobs SET execution_time = execution_time - interval '1 minute'"
        " WHERE job_id = 'normal-old'"
    )
    await schedule(pool, migrated, "critical", priority=20)
    await schedule(pool, migrated, "future", delay=timedelta(hours=1), priority=20)
    await schedule(pool, migrated, "unregistered", task="not:mine")
    worker = await register(pool, migrated)
    rows = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 3)", worker)
    assert [(r["job_id"], r["attempt"]) for r in rows] == [
        ("critical", 1),
        ("normal-old", 1),
        ("normal-new", 1),
    ]
    assert await claim(pool, migrated, worker, max_jobs=10) == ["low"]
    assert await claim(pool, migrated, worker, max_jobs=10) == []
    running = await job(pool, migrated, "critical")
    assert (running["status"], str(running["lease_owner"]), running["attempts"]) == (
        "running",
        worker,
        1,
    )
    # An explicit task list narrows the claim to those tasks.
    await schedule(pool, migrated, "other", task=OTHER)
    await schedule(pool, migrated, "record", task=RECORD)
    assert await claim(pool, migrated, worker, task_names=[OTHER], max_jobs=10) == ["other"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="max_jobs"):
        await claim(pool, migrated, worker, max_jobs=0)


async def test_a_claim_skips_rows_another_claim_has_locked(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a")
    await schedule(pool, migrated, "b")
    worker = await register(pool, migrated)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SELECT 1 FROM {q}.jobs WHERE job_id = 'a' FOR UPDATE")
        assert await claim(pool, migrated, worker, max_jobs=10) == ["b"]


async def test_a_worker_whose_lease_lapsed_claims_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await schedule(pool, migrated, "a")
    worker = await register(pool, migrated)
    await expire(pool, migrated, worker)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="no live lease"):
        await claim(pool, migrated, worker)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="register a new"):
        await claim(pool, migrated, "00000000-0000-0000-0000-000000000000")
    assert (await job(pool, migrated, "a"))["status"] == "pending"


async def test_outcomes_are_fenced_by_owner_and_attempt(pool: asyncpg.Pool, migrated: str) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a")
    worker, other = await register(pool, migrated), await register(pool, migrated)
    assert await claim(pool, migrated, worker) == ["a"]
    before = await job(pool, migrated, "a")
    # A stale attempt or another worker: nothing changes.
    assert not await pool.fetchval(f"SELECT {q}.complete_job($1, 'a', 2)", worker)
    assert not await pool.fetchval(f"SELECT {q}.complete_job($1, 'a', 1)", other)
    assert await pool.fetchval(f"SELECT {q}.fail_job($1, 'a', 0, 'late')", worker) is None
    assert not await pool.fetchval(f"SELECT {q}.release_job($1, 'a', 1)", other)
    assert await job(pool, migrated, "a") == before
    assert await pool.fetchval(f"SELECT {q}.complete_job($1, 'a', 1)", worker)
    done = await job(pool, migrated, "a")
    assert (done["status"], done["lease_owner"], done["finished_at"] is not None) == (
        "succeeded",
        None,
        True,
    )
    assert not await pool.fetchval(f"SELECT {q}.complete_job($1, 'a', 1)", worker)


async def test_failures_spend_max_retries_and_retry_at_the_given_time(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a", max_retries=1)
    worker = await register(pool, migrated)
    assert await claim(pool, migrated, worker) == ["a"]
    async with pool.acquire() as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        status = await conn.fetchval(
            f"SELECT {q}.fail_job($1, 'a', 1, 'boom', now() + interval '1 hour')", worker
        )
    retrying = await job(pool, migrated, "a")
    assert (status, retrying["failures"], retrying["last_error"]) == ("pending", 1, "boom")
    assert retrying["execution_time"] == now + timedelta(hours=1)
    assert await claim(pool, migrated, worker) == []  # not due yet
    await pool.execute(f"UPDATE {q}.jobs SET execution_time = now() WHERE job_id = 'a'")
    assert await claim(pool, migrated, worker) == ["a"]
    assert await pool.fetchval(f"SELECT {q}.fail_job($1, 'a', 2, $2)", worker, "x" * 9000) == (
        "failed"
    )
    failed = await job(pool, migrated, "a")
    assert (failed["failures"], failed["attempts"], len(failed["last_error"])) == (2, 2, 8000)


async def test_release_and_unregister_spend_no_budget_and_a_cancel_request_wins(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    for job_id in ("a", "b", "c"):
        await schedule(pool, migrated, job_id)
    worker = await register(pool, migrated)
    assert sorted(await claim(pool, migrated, worker, max_jobs=3)) == ["a", "b", "c"]
    assert await pool.fetchval(f"SELECT {q}.cancel_job('b')") == "cancel_requested"
    assert [
        (r["job_id"], r["attempt"])
        for r in await pool.fetch(f"SELECT * FROM {q}.cancel_requested_jobs($1)", worker)
    ] == [("b", 1)]
    assert await pool.fetchval(f"SELECT {q}.release_job($1, 'a', 1, 'shutting down')", worker)
    assert await pool.fetchval(f"SELECT {q}.unregister_worker($1)", worker) == 2
    rows = {r["job_id"]: r for r in await pool.fetch(f"SELECT * FROM {q}.jobs")}
    assert {k: (r["status"], r["failures"], r["lost_leases"]) for k, r in rows.items()} == {
        "a": ("pending", 0, 0),
        "b": ("cancelled", 0, 0),
        "c": ("pending", 0, 0),
    }
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.workers") == 0


async def test_a_python_replica_reaps_a_dead_foreign_worker_and_runs_its_jobs(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(
        f"SELECT {q}.schedule_job($1, '[\"sql-reaped\"]', job_id => 'orphan')", RECORD
    )
    worker = await register(pool, migrated, "1 second")
    assert await claim(pool, migrated, worker) == ["orphan"]
    # The foreign worker dies (no more heartbeats); a replica takes the job over.
    replica = make_scheduler(tasks=[jobs.record])
    await replica.start()
    await wait_until(partial(has_status, replica, "orphan", JobStatus.SUCCEEDED))
    row = await job(pool, migrated, "orphan")
    assert (row["attempts"], row["lost_leases"], row["failures"]) == (2, 1, 0)
    assert [c["attempt"] for c in jobs.calls("sql-reaped")] == [2]
    # The zombie's late outcome changes nothing.
    assert not await pool.fetchval(f"SELECT {q}.complete_job($1, 'orphan', 1)", worker)
    assert await pool.fetchval(f"SELECT {q}.fail_job($1, 'orphan', 1, 'late')", worker) is None
    assert (await job(pool, migrated, "orphan"))["status"] == "succeeded"
