"""Forward-only schema migrations: numbered `.sql` files, recorded in a table, applied in
one transaction under an advisory lock so replicas starting together migrate once."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import asyncpg

from scheduler.errors import SchemaError, SchemaNotReadyError, SchemaTooNewError
from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import quote_identifier, render, validate_schema_name

logger = logging.getLogger("scheduler.migrate")

#: How long migrate() waits for another process's migration (the advisory lock) to end.
MIGRATION_LOCK_SECONDS = 60.0

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str


@cache
def known_migrations() -> tuple[Migration, ...]:
    folder = resources.files("scheduler.postgres").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files must be numbered 0001.. without gaps: {versions}")
    return tuple(found)


def latest_version() -> int:
    return known_migrations()[-1].version


def _lock_key(schema: str) -> str:
    return f"scheduler.migrate:{schema}"


async def current_version(conn: AnyConnection, schema: str) -> int:
    """The schema version recorded in the database (0 when never migrated)."""
    schema = validate_schema_name(schema)
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{quote_identifier(schema)}.schema_migrations"
    )
    if not exists:
        return 0
    version: int | None = await conn.fetchval(
        f"SELECT max(version) FROM {quote_identifier(schema)}.schema_migrations"
    )
    return version or 0


async def migrate(conn: AnyConnection, schema: str) -> list[int]:
    """Apply every migration the database lacks; return the versions applied."""
    schema = validate_schema_name(schema)
    quoted = quote_identifier(schema)
    applied: list[int] = []
    async with conn.transaction():
        await _lock_migrations(conn, schema)
        # A schema a DBA created for the owner role needs no CREATE right on the database.
        if await conn.fetchval("SELECT to_regnamespace($1) IS NULL", quoted):
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = await current_version(conn, schema)
        _refuse_newer(version, schema)
        for migration in known_migrations():
            if migration.version <= version:
                continue
            await conn.execute(render(migration.template, schema))
            await conn.execute(
                f"INSERT INTO {quoted}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
            logger.info(
                "applied migration %04d_%s to schema %s", migration.version, migration.name, schema
            )
    return applied


async def _lock_migrations(conn: AnyConnection, schema: str) -> None:
    """Take the schema's migration lock, waiting at most MIGRATION_LOCK_SECONDS: a peer
    stuck mid-migration (a frozen process in its transaction) must not hang start()."""
    before = await conn.fetchval("SELECT current_setting('lock_timeout')")
    limit = f"{max(int(MIGRATION_LOCK_SECONDS * 1000), 1)}ms"
    await conn.execute("SELECT set_config('lock_timeout', $1, true)", limit)
    try:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _lock_key(schema))
    except asyncpg.LockNotAvailableError:
        raise SchemaError(
            f"another process has been migrating schema {schema!r} for over"
            f" {MIGRATION_LOCK_SECONDS:g} s and still holds its lock; look for a stuck"
            " `scheduler migrate` or replica (pg_locks, advisory) and end it, then retry"
        ) from None
    # Only the wait for the lock is bounded: the migration's own statements are not.
    await conn.execute("SELECT set_config('lock_timeout', $1, true)", before)


async def check_schema(conn: AnyConnection, schema: str) -> None:
    """Raise unless the database schema is exactly the version this code knows."""
    version = await current_version(conn, schema)
    _refuse_newer(version, schema)
    if version < latest_version():
        raise SchemaNotReadyError(
            f"schema {schema!r} is at version {version}, this release needs"
            f" {latest_version()}: run `scheduler migrate` (or `await scheduler.migrate()`),"
            " or start the scheduler with auto_migrate=True"
        )


def _refuse_newer(version: int, schema: str) -> None:
    if version > latest_version():
        raise SchemaTooNewError(
            f"schema {schema!r} is at version {version}, newer than this release of"
            f" scheduler knows ({latest_version()}); upgrade the scheduler package on this"
            " replica instead of running an older release against a newer database"
        )
