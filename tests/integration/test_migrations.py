from __future__ import annotations

import asyncio

import asyncpg
import pytest

from scheduler import SchemaNotReadyError, SchemaTooNewError
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs


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
        "job_attempts",
        "job_dependencies",
        "jobs",
        "queues",
        "schedules",
        "schema_migrations",
        "settings",
        "task_limits",
        "workers",
    ]
