from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from scheduler import (
    JobStatus,
    SchedulerState,
    SchemaError,
    SchemaFunctionsMismatchError,
    SchemaNotReadyError,
    SchemaTooNewError,
)
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.claims import claim
from tests.support.db import has_status, unique_schema, wait_until
from tests.support.schema_catalog import catalog, differences, head_migrations, install_head


async def test_migrating_twice_applies_each_migration_once(
    pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    assert await scheduler.migrate() == [m.version for m in migrations.known_migrations()]
    assert await scheduler.migrate() == []


async def test_replicas_migrating_at_once_migrate_once(pool: asyncpg.Pool, schema: str) -> None:
    async def one() -> list[int]:
        async with pool.acquire() as conn:
            return await migrations.migrate(conn, schema)

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(map(len, results)) == [0] * 7 + [migrations.latest_version()]
    count = await pool.fetchval(
        f"SELECT count(*) FROM {quote_identifier(schema)}.schema_migrations"
    )
    assert count == migrations.latest_version()


async def test_a_newer_database_is_refused(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    await pool.execute(
        f"INSERT INTO {quote_identifier(migrated)}.schema_migrations (version, name)"
        " VALUES (999, 'from_the_future')"
    )
    with pytest.raises(SchemaTooNewError, match="newer than this release"):
        await make_scheduler().start()
    with pytest.raises(SchemaTooNewError):
        await make_scheduler(auto_migrate=False).start()


async def test_without_auto_migrate_an_empty_database_is_refused_clearly(
    schema: str, make_scheduler: SchedulerFactory
) -> None:
    with pytest.raises(SchemaNotReadyError, match="scheduler migrate"):
        await make_scheduler(auto_migrate=False).start()


async def test_scheduling_before_migrating_says_what_to_do(
    schema: str, make_scheduler: SchedulerFactory
) -> None:
    with pytest.raises(SchemaNotReadyError, match="do not exist"):
        await make_scheduler().schedule(jobs.record, args=("k",))


async def test_migrations_built_schema_has_the_expected_tables(
    pool: asyncpg.Pool, migrated: str
) -> None:
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1"
        " AND table_type = 'BASE TABLE' ORDER BY table_name",
        migrated,
    )
    assert [t["table_name"] for t in tables] == [
        "fleet_passes",
        "job_attempts",
        "job_dependencies",
        "jobs",
        "limits",
        "lock_key_walk",
        "queues",
        "schedules",
        "schema_functions",
        "schema_migrations",
        "settings",
        "workers",
    ]


# -- one home for every SQL function (issue 20, item 1) ----------------------------------
# The migrations hold the tables; functions/ holds every function, view and trigger. A
# schema upgraded from the last release whose migrations held the function bodies must be
# the schema a fresh install builds, and keep its rows, rights and guarantees.


@pytest.fixture
async def other_schema(pool: asyncpg.Pool) -> AsyncIterator[str]:
    name = unique_schema()
    try:
        yield name
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(name)} CASCADE")


@pytest.fixture
async def granted_roles(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, str]]:
    """A runtime and a producer role (NOLOGIN), dropped with what they were granted."""
    suffix = uuid.uuid4().hex[:12]
    names = (f"sched_run_{suffix}", f"sched_prod_{suffix}")
    for name in names:
        await pool.execute(f"CREATE ROLE {quote_identifier(name)} NOLOGIN")
    try:
        yield names
    finally:
        for name in names:
            await pool.execute(f"DROP OWNED BY {quote_identifier(name)}")
            await pool.execute(f"DROP ROLE {quote_identifier(name)}")


async def grant(pool: asyncpg.Pool, schema: str, roles: tuple[str, str]) -> None:
    q = quote_identifier(schema)
    await pool.execute(f"SELECT {q}.grant_runtime_role($1)", roles[0])
    await pool.execute(f"SELECT {q}.grant_producer_role($1)", roles[1])


# From today's head (10), and from 9: 0010 drops job_request() and schedule_job() for their
# new signatures, so the rights a role held on them must come back with the function files.
@pytest.mark.parametrize("from_version", [10, 9])
async def test_a_schema_upgraded_from_the_last_release_agrees_with_a_fresh_one(
    pool: asyncpg.Pool,
    schema: str,
    other_schema: str,
    granted_roles: tuple[str, str],
    from_version: int,
) -> None:
    async with pool.acquire() as conn:
        assert await install_head(conn, schema, up_to=from_version) == from_version
    await grant(pool, schema, granted_roles)
    before = object_names(await catalog(pool, schema))
    async with pool.acquire() as conn:
        applied = await migrations.migrate(conn, schema)
        assert applied == list(range(from_version + 1, migrations.latest_version() + 1))
        assert await migrations.migrate(conn, other_schema) == [
            m.version for m in migrations.known_migrations()
        ]
    await grant(pool, other_schema, granted_roles)
    upgraded, fresh = await catalog(pool, schema), await catalog(pool, other_schema)
    # Objects new since that release are the grant helpers' to share out (the operating
    # guide says to run them again after an upgrade): until then only their rights differ.
    new = object_names(fresh) - before
    assert differences(without_grants(upgraded, new), without_grants(fresh, new)) == []
    await grant(pool, schema, granted_roles)
    upgraded = await catalog(pool, schema)
    assert differences(upgraded, fresh) == []
    # Not two empty lists: every kind of object was compared.
    assert all(fresh[part] for part in fresh), [part for part in fresh if not fresh[part]]
    # The old path built every function the fresh one has, through its own bodies; the new
    # files replaced them: a role of the last release can still call what it could.
    names = {row["name"] for row in fresh["functions"]}
    assert {"claim_jobs", "schedule_job", "job_request", "check_job_basics"} <= names
    runtime = granted_roles[0]
    assert any(
        row["name"] == "schedule_job" and any(g.startswith(f"{runtime}=X/") for g in row["grants"])
        for row in upgraded["functions"]
    )


def object_names(built: dict[str, Any]) -> set[tuple[str, object]]:
    """The functions and relations of a catalog: (name, kind); a table that became a view
    is another object."""
    return {
        (row["name"], row.get("kind")) for part in ("functions", "relations") for row in built[part]
    }


def without_grants(built: dict[str, Any], names: set[tuple[str, object]]) -> dict[str, Any]:
    """The catalog with the rights on the objects `names` left out."""
    return {
        part: [
            {**row, "grants": None}
            if isinstance(row, dict) and (row.get("name"), row.get("kind")) in names
            else row
            for row in rows
        ]
        for part, rows in built.items()
    }


async def test_the_schema_agreement_catches_a_function_that_differs(
    pool: asyncpg.Pool, migrated: str, other_schema: str
) -> None:
    """The comparison can fail: one function body changed in one schema is found."""
    async with pool.acquire() as conn:
        await migrations.migrate(conn, other_schema)
    q = quote_identifier(migrated)
    await pool.execute(
        f"CREATE OR REPLACE FUNCTION {q}.keep_blocked() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RETURN NEW; END $$"
    )
    found = differences(await catalog(pool, migrated), await catalog(pool, other_schema))
    assert any("keep_blocked" in line for line in found)


RECORD = "tests.support.jobs:record"
# (queues and task_limits: their limits became rows of `limits` in 0017, checked apart.)
TABLES = (
    "jobs",
    "workers",
    "schedules",
    "job_attempts",
    "job_dependencies",
    "schema_migrations",
)


#: Columns the migrations after the head release add (0012 error_parts: derived from the
#: error text of the rows that have one).
ADDED_COLUMNS = ["error_type", "error_message"]


async def rows(
    pool: asyncpg.Pool, schema: str, *, without: list[str] | None = None
) -> dict[str, list[str]]:
    """Every row of every table, as JSON, `without` those columns."""
    q = quote_identifier(schema)
    return {
        table: [
            r[0]
            for r in await pool.fetch(
                f"SELECT (to_jsonb(t) - $1::text[])::text FROM {q}.{table} t ORDER BY 1",
                without or [],
            )
        ]
        for table in TABLES
    }


async def populate(pool: asyncpg.Pool, schema: str) -> None:
    """Rows in every status, written as the last release's SQL allows."""
    q = quote_identifier(schema)
    dead = uuid.uuid4()
    await pool.execute(
        f"INSERT INTO {q}.workers (worker_id, hostname, pid, tasks, lease_expires_at, queues)"
        " VALUES ($1, 'gone', 1, ARRAY[$2], now() - interval '1 minute', ARRAY['default'])",
        dead,
        RECORD,
    )
    args = json.dumps(["upgraded"])
    await pool.execute(f"SELECT {q}.schedule_job($1, $2::jsonb, job_id => 'pending')", RECORD, args)
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, args, status, lease_owner, attempts,"
        " claimed_at, started_at, max_retries)"
        " VALUES ('orphan', $1, $2::jsonb, 'running', $3, 1, now(), now(), 1)",
        RECORD,
        args,
        dead,
    )
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, args, status, attempts, finished_at,"
        " result, last_error, failures)"
        " VALUES ('succeeded', $1, $2::jsonb, 'succeeded', 1, now(), '42', NULL, 0),"
        "        ('failed', $1, $2::jsonb, 'failed', 1, now(), NULL, 'boom', 1),"
        "        ('cancelled', $1, $2::jsonb, 'cancelled', 0, now(), NULL, NULL, 0)",
        RECORD,
        args,
    )
    await pool.execute(
        f"INSERT INTO {q}.job_attempts (job_id, attempt, worker_id, hostname, outcome, error)"
        " VALUES ('succeeded', 1, $1, 'gone', 'succeeded', NULL),"
        "        ('failed', 1, $1, 'gone', 'failed', 'boom')",
        dead,
    )
    await pool.execute(f"SELECT {q}.schedule_job($1, $2::jsonb, job_id => 'blocked')", RECORD, args)
    assert await pool.fetchval(f"SELECT {q}.add_dependencies('blocked', ARRAY['pending'])") == (
        "blocked"
    )
    await pool.execute(f"SELECT {q}.add_schedule('hourly', $1, every => '1 hour')", RECORD)
    await pool.execute(f"SELECT {q}.set_queue_limits('limited', concurrency_limit => 1)")
    await pool.execute(f"SELECT {q}.set_task_limits($1, concurrency_limit => 5)", RECORD)
    # A rate limit whose bucket is part spent, and a paused queue.
    await pool.execute(
        f"SELECT {q}.set_task_limits('other', rate_limit => 5, rate_period => 60, rate_burst => 3)"
    )
    await pool.execute(
        f"UPDATE {q}.task_limits SET tokens = 1.5, refilled_at = '2026-01-01T00:00:00Z'"
        " WHERE task_name = 'other'"
    )
    await pool.execute(f"SELECT {q}.pause_queue('held')")
    for n in range(3):
        await pool.execute(
            f"SELECT {q}.schedule_job($1, $2::jsonb, job_id => $3, queue => 'limited')",
            RECORD,
            args,
            f"limited-{n}",
        )
    statuses = await pool.fetch(f"SELECT DISTINCT status FROM {q}.jobs")
    assert {r["status"] for r in statuses} == {
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "blocked",
    }


async def test_upgrading_a_populated_schema_keeps_every_row_and_guarantee(
    pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory
) -> None:
    async with pool.acquire() as conn:
        installed = await install_head(conn, schema)
    await populate(pool, schema)
    before = await rows(pool, schema)
    async with pool.acquire() as conn:
        applied = await migrations.migrate(conn, schema)
        await migrations.check_schema(conn, schema)
    after = await rows(pool, schema, without=ADDED_COLUMNS)
    # The migrations since d82bdda add their schema_migrations rows; every other row is
    # kept, unchanged but for the columns they add.
    added = [r for r in after.pop("schema_migrations") if r not in before["schema_migrations"]]
    assert sorted(json.loads(r)["version"] for r in added) == applied
    assert applied == list(range(installed + 1, migrations.latest_version() + 1))
    before.pop("schema_migrations")
    assert after == before
    # The limits became rows of their kinds, the bucket's fill kept; the pause stayed.
    q = quote_identifier(schema)
    limits = await pool.fetch(
        f"SELECT scope, name, kind, settings::text, state::text FROM {q}.limits ORDER BY 1, 2, 3"
    )
    assert [tuple(r) for r in limits] == [
        ("queue", "limited", "concurrency", '{"concurrency_limit": 1}', None),
        (
            "task",
            "other",
            "rate",
            '{"rate_burst": 3, "rate_limit": 5, "rate_period": 60}',
            '{"tokens": 1.5, "refilled_at": 1767225600}',
        ),
        ("task", RECORD, "concurrency", '{"concurrency_limit": 5}', None),
    ]
    paused = await pool.fetch(f"SELECT queue FROM {q}.queues WHERE paused")
    assert [r["queue"] for r in paused] == ["held"]
    # error_parts derived the type and message of the rows that had an error.
    errors = await pool.fetch(
        f"SELECT job_id, error_type, error_message FROM {q}.jobs WHERE last_error IS NOT NULL"
        f" UNION ALL SELECT job_id, error_type, error_message FROM {q}.job_attempts"
        " WHERE error IS NOT NULL"
    )
    assert [tuple(r) for r in errors] == [("failed", None, "boom")] * 2

    # The queue limit still holds: claimers racing for 'limited' start one job.
    store = PostgresJobStore(pool, schema)
    owners = [uuid.uuid4() for _ in range(4)]
    for owner in owners:
        await store.register_worker(owner, "host", 1, [RECORD], 30, ["limited"])
    claims = await asyncio.gather(
        *(claim(PostgresJobStore(pool, schema), o, [RECORD], 3, 0.0, ["limited"]) for o in owners)
    )
    assert sum(map(len, claims)) == 1

    # A scheduler runs the pending job, reclaims the orphan of the dead worker and runs it
    # again, and the job blocked on the pending one runs once it succeeded.
    scheduler = make_scheduler(tasks=[jobs.record], auto_migrate=False)
    await scheduler.start()
    for job_id in ("pending", "orphan", "blocked"):
        await wait_until(
            functools.partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED),
            message=f"{job_id} to succeed",
        )
    orphan = await scheduler.get_job("orphan")
    assert orphan is not None and orphan.attempts == 2
    for job_id, status in (
        ("succeeded", JobStatus.SUCCEEDED),
        ("failed", JobStatus.FAILED),
        ("cancelled", JobStatus.CANCELLED),
    ):
        assert await has_status(scheduler, job_id, status)


async def test_functions_other_than_this_releases_are_refused_until_migrated(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    # A release that changed only a function body: same migration version, other functions.
    await pool.execute(
        f"CREATE OR REPLACE FUNCTION {q}.keep_blocked() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RETURN NEW; END $$"
    )
    await pool.execute(f"UPDATE {q}.schema_functions SET checksum = 'from another release'")
    async with pool.acquire() as conn:
        with pytest.raises(SchemaFunctionsMismatchError, match="scheduler migrate"):
            await migrations.check_schema(conn, migrated)
    with pytest.raises(SchemaFunctionsMismatchError):
        await make_scheduler(auto_migrate=False).start()
    async with pool.acquire() as conn:
        assert await migrations.migrate(conn, migrated) == []  # no migration, but the files
        await migrations.check_schema(conn, migrated)
    body = await pool.fetchval(
        f"SELECT prosrc FROM pg_proc WHERE oid = '{q}.keep_blocked'::regproc"
    )
    assert "NEW.status := 'blocked'" in body  # this release's body is back


async def test_functions_of_a_newer_revision_are_refused_and_not_replaced(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """An older replica of a rolling deploy neither runs on nor reverts newer functions."""
    q = quote_identifier(migrated)
    newer = migrations.function_set().revision + 1
    await pool.execute(f"UPDATE {q}.schema_functions SET revision = $1, checksum = 'newer'", newer)
    async with pool.acquire() as conn:
        with pytest.raises(SchemaTooNewError, match="upgrade the scheduler package"):
            await migrations.check_schema(conn, migrated)
        with pytest.raises(SchemaTooNewError):
            await migrations.migrate(conn, migrated)
    with pytest.raises(SchemaTooNewError):
        await make_scheduler().start()
    assert await pool.fetchval(f"SELECT checksum FROM {q}.schema_functions") == "newer"


async def test_a_role_granted_before_the_functions_table_can_still_check_the_schema(
    pool: asyncpg.Pool, schema: str, granted_roles: tuple[str, str]
) -> None:
    async with pool.acquire() as conn:
        await install_head(conn, schema)
    await grant(pool, schema, granted_roles)
    async with pool.acquire() as conn:
        await migrations.migrate(conn, schema)
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {quote_identifier(granted_roles[0])}")
            await migrations.check_schema(conn, schema)


def test_head_migrations_are_the_last_release_with_function_bodies() -> None:
    head = head_migrations()
    assert [version for version, _, _ in head] == list(range(1, 11))
    assert any("CREATE FUNCTION" in text for _, _, text in head)


async def test_a_function_file_that_fails_is_named_and_nothing_is_written(
    pool: asyncpg.Pool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shipped = migrations.function_set()
    broken = migrations.FunctionSet(
        shipped.revision,
        (*shipped.files, ("broken", "CREATE OR REPLACE VIEW {schema}.broken AS SELECT nope;")),
        "broken",
    )
    monkeypatch.setattr(migrations, "function_set", lambda: broken)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await migrations.migrate(conn, schema)
        assert "functions/broken.sql failed" in caplog.text
        assert await migrations.current_version(conn, schema) == 0


async def test_a_migration_lock_held_elsewhere_fails_migrate_in_time_with_a_clear_error(
    pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory, monkeypatch: Any
) -> None:
    """Issue 19 (every wait has a deadline): a peer stuck mid-migration used to make every
    start() wait for its lock for ever."""
    monkeypatch.setattr(migrations, "MIGRATION_LOCK_SECONDS", 0.5)
    scheduler = make_scheduler()
    async with pool.acquire() as stuck, stuck.transaction():
        await stuck.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", migrations._lock_key(schema)
        )
        with anyio.fail_after(10), pytest.raises(SchemaError, match="still holds its lock"):
            await scheduler.start()
    assert scheduler.state is SchedulerState.STOPPED
    # Once the lock is free, migrating works, with the usual (unbounded) statement locks.
    assert await make_scheduler().migrate() == [m.version for m in migrations.known_migrations()]


async def test_migrate_applies_the_hot_tables_autovacuum_settings(
    pool: asyncpg.Pool, schema: str
) -> None:
    """jobs and job_attempts are vacuumed after 1% (+1,000) dead rows, not PostgreSQL's 20%:
    a table of millions of finished rows must not carry millions of dead ones (the scale
    migration)."""
    async with pool.acquire() as conn:
        await migrations.migrate(conn, schema)
    options = {
        row["relname"]: set(row["reloptions"] or [])
        for row in await pool.fetch(
            "SELECT c.relname, c.reloptions FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relname IN ('jobs', 'job_attempts')",
            schema,
        )
    }
    for table in ("jobs", "job_attempts"):
        assert {
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_threshold=1000",
            "autovacuum_vacuum_cost_limit=1000",
        } <= options[table], table
    assert {
        "autovacuum_analyze_scale_factor=0.02",
        "autovacuum_analyze_threshold=1000",
    } <= options["jobs"]
