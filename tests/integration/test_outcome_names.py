"""The outcome names of the attempt history live in end_attempts() alone (migration 0016
dropped the table's CHECK that repeated them): every history row is written through it,
it refuses a name it does not know, and an upgraded database keeps its history."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from scheduler import AttemptOutcome
from scheduler.postgres import migrate as migrations
from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import quote_identifier, render
from scheduler.postgres.store import PostgresJobStore

RECORD = "tests.support.jobs:record"


async def install_up_to(conn: AnyConnection, schema: str, version: int) -> None:
    """This release's migrations up to `version`, recorded as `migrate` records them."""
    quoted = quote_identifier(schema)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA {quoted}")
        await conn.execute(
            f"CREATE TABLE {quoted}.schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in migrations.known_migrations():
            if migration.version > version:
                break
            await conn.execute(render(migration.template, schema))
            await conn.execute(
                f"INSERT INTO {quoted}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )


async def outcome_checks(pool: asyncpg.Pool, schema: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c"
        " WHERE c.conrelid = $1::regclass AND c.contype = 'c'",
        f"{quote_identifier(schema)}.job_attempts",
    )
    return [r["definition"] for r in rows if "outcome" in r["definition"]]


async def test_an_upgraded_database_keeps_its_history_and_lists_no_outcome_in_the_table(
    pool: asyncpg.Pool, schema: str
) -> None:
    async with pool.acquire() as conn:
        await install_up_to(conn, schema, 15)
    assert await outcome_checks(pool, schema) != []  # the CHECK the upgrade drops
    q = quote_identifier(schema)
    worker = uuid.uuid4()
    names = [member.value for member in AttemptOutcome]
    for n, name in enumerate(names):
        await pool.execute(
            f"INSERT INTO {q}.jobs (job_id, task_name, attempts) VALUES ($1, $2, 1)",
            f"job-{n}",
            RECORD,
        )
        await pool.execute(
            f"INSERT INTO {q}.job_attempts (job_id, attempt, worker_id, hostname, outcome,"
            " error) VALUES ($1, 1, $2, 'old-host', $3, $4)",
            f"job-{n}",
            worker,
            name,
            None if name == "succeeded" else f"{name} before the upgrade",
        )
    history = (
        "SELECT job_id, attempt, worker_id, hostname, outcome, error, finished_at"
        f" FROM {q}.job_attempts ORDER BY job_id"
    )
    before = [tuple(r) for r in await pool.fetch(history)]

    async with pool.acquire() as conn:
        assert await migrations.migrate(conn, schema) == list(
            range(16, migrations.latest_version() + 1)
        )
        await migrations.check_schema(conn, schema)

    assert [tuple(r) for r in await pool.fetch(history)] == before
    assert await outcome_checks(pool, schema) == []
    store = PostgresJobStore(pool, schema)
    for n, name in enumerate(names):
        (attempt,) = await store.get_attempts(f"job-{n}")
        assert attempt.outcome is AttemptOutcome(name)


async def test_end_attempts_refuses_an_outcome_it_does_not_name(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    with pytest.raises(asyncpg.InvalidParameterValueError) as refused:
        await pool.fetch(
            f"SELECT * FROM {q}.end_attempts(ARRAY['a'], ARRAY[$1::uuid], ARRAY[1],"
            " ARRAY['exploded'])",
            uuid.uuid4(),
        )
    message = str(refused.value)
    assert message.startswith("end_attempts: an outcome must be one of ")
    assert message.endswith("; got {exploded}")
    listed = message.removeprefix("end_attempts: an outcome must be one of ").split("; got")[0]
    assert sorted(listed.split(", ")) == sorted(member.value for member in AttemptOutcome)


async def test_unregistering_ends_the_attempts_through_end_attempts(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """The SQL worker protocol's unregister_worker() writes the history rows end_attempts()
    writes for a release: released, or cancelled when a cancel was requested."""
    q = quote_identifier(migrated)
    for job_id in ("a", "b"):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => $2)", RECORD, job_id)
    worker = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY[$1], '30 seconds'::interval, 'node-host', 4242)",
        RECORD,
    )
    claimed = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 2)", worker)
    assert sorted(r["job_id"] for r in claimed) == ["a", "b"]
    assert await pool.fetchval(f"SELECT {q}.cancel_job('b')") == "cancel_requested"
    assert await pool.fetchval(f"SELECT {q}.unregister_worker($1)", worker) == 2

    reason = "released: its worker unregistered"
    history = await pool.fetch(
        f"SELECT job_id, attempt, worker_id, hostname, outcome, error, error_type,"
        f" error_message, claimed_at IS NOT NULL AS claimed FROM {q}.job_attempts ORDER BY job_id"
    )
    assert [tuple(r) for r in history] == [
        ("a", 1, worker, "node-host", "released", reason, None, reason, True),
        ("b", 1, worker, "node-host", "cancelled", reason, None, reason, True),
    ]
    jobs = await pool.fetch(
        f"SELECT job_id, status, last_error, error_message, lease_owner, started_at IS NULL"
        f" AS unstarted, finished_at IS NULL AS unfinished FROM {q}.jobs ORDER BY job_id"
    )
    assert [tuple(r) for r in jobs] == [
        ("a", "pending", reason, reason, None, True, True),
        ("b", "cancelled", reason, reason, None, False, False),
    ]
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.workers") == 0
