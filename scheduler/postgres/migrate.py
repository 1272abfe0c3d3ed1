"""Forward-only schema migrations: numbered `.sql` files, recorded in a table, applied in
one transaction under an advisory lock so replicas starting together migrate once.

The migrations hold table changes (and the drops a function's signature change needs).
Every function, view and trigger has one file in `functions/` holding its current body;
`migrate` applies them all, in the order of `functions/manifest.txt`, after the migrations
and in the same transaction, whenever a migration ran or the schema's recorded function
set (revision and checksum, in `schema_functions`) is not the one this release ships.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import asyncpg

from scheduler.errors import (
    SchemaError,
    SchemaFunctionsMismatchError,
    SchemaNotReadyError,
    SchemaTooNewError,
)
from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import quote_identifier, render, validate_schema_name

logger = logging.getLogger("scheduler.migrate")

#: How long migrate() waits for another process's migration (the advisory lock) to end.
MIGRATION_LOCK_SECONDS = 60.0

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str


@dataclass(frozen=True)
class FunctionSet:
    """The function files this release ships: `files` as (name, template), in apply order."""

    revision: int
    files: tuple[tuple[str, str], ...]
    checksum: str


@dataclass(frozen=True)
class AppliedFunctions:
    """What `schema_functions` records of a schema (revision 0: never applied)."""

    revision: int
    checksum: str | None


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


@cache
def function_set() -> FunctionSet:
    """The function files, read and checked against the manifest once."""
    folder = resources.files("scheduler.postgres").joinpath("functions")
    revision: int | None = None
    names: list[str] = []
    for raw in folder.joinpath("manifest.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("revision "):
            revision = int(line.removeprefix("revision "))
        elif _FUNCTION_NAME.match(line):
            names.append(line)
        else:
            raise RuntimeError(f"functions/manifest.txt: cannot read the line {raw!r}")
    present = {e.name.removesuffix(".sql") for e in folder.iterdir() if e.name.endswith(".sql")}
    if revision is None or revision < 1:
        raise RuntimeError("functions/manifest.txt must say `revision N` (N >= 1)")
    if len(set(names)) != len(names) or set(names) != present:
        raise RuntimeError(
            "functions/manifest.txt must list every .sql file of functions/ once:"
            f" unlisted {sorted(present - set(names))}, missing {sorted(set(names) - present)}"
        )
    files = tuple((name, folder.joinpath(f"{name}.sql").read_text()) for name in names)
    digest = hashlib.sha256(f"revision {revision}".encode())
    for name, template in files:
        digest.update(b"\0" + name.encode() + b"\0" + template.encode())
    return FunctionSet(revision, files, digest.hexdigest())


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


async def applied_functions(conn: AnyConnection, schema: str) -> AppliedFunctions:
    """The function set recorded in the database (revision 0 when never applied)."""
    schema = validate_schema_name(schema)
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{quote_identifier(schema)}.schema_functions"
    )
    if not exists:
        return AppliedFunctions(0, None)
    row = await conn.fetchrow(
        f"SELECT revision, checksum FROM {quote_identifier(schema)}.schema_functions"
    )
    if row is None:
        return AppliedFunctions(0, None)
    return AppliedFunctions(row["revision"], row["checksum"])


async def migrate(conn: AnyConnection, schema: str) -> list[int]:
    """Apply every migration the database lacks, then the function files if a migration ran
    or the schema's functions are not this release's; return the versions applied."""
    schema = validate_schema_name(schema)
    quoted = quote_identifier(schema)
    shipped = function_set()
    # The common case, a schema already current, writes nothing and takes no lock: a role
    # with no CREATE right (a runtime role) may start replicas with auto_migrate on, and a
    # fleet starting at once does not queue on the migration lock.
    if await _is_current(conn, schema, shipped):
        return []
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
        await _create_functions_table(conn, quoted)
        version = await current_version(conn, schema)
        _refuse_newer(version, schema)
        recorded = await applied_functions(conn, schema)
        _refuse_newer_functions(recorded, schema)
        # Read before a migration drops a function whose signature changes: its successor
        # gets the same rights back once the function files are applied.
        held = await _held_rights(conn, schema, "functions")
        readers = await _held_rights(conn, schema, "relations")
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
        # Only the rights on functions a migration dropped are given back: a right a
        # migration revoked from a function it kept (0011 took the schedule functions from
        # producers) stays revoked.
        grants = await _dropped_grants(conn, held)
        if applied or recorded != AppliedFunctions(shipped.revision, shipped.checksum):
            await _apply_functions(conn, schema, shipped, grants)
            await _give_back_reads(conn, schema, readers)
    return applied


async def _is_current(conn: AnyConnection, schema: str, shipped: FunctionSet) -> bool:
    """Whether the schema holds every migration and exactly this release's functions."""
    return await current_version(conn, schema) == latest_version() and await applied_functions(
        conn, schema
    ) == AppliedFunctions(shipped.revision, shipped.checksum)


async def _create_functions_table(conn: AnyConnection, quoted: str) -> None:
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{quoted}.schema_functions"):
        return
    await conn.execute(
        f"CREATE TABLE {quoted}.schema_functions ("
        " only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),"
        " revision integer NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    # Whoever may read the migration versions (grant_runtime_role()) runs check_schema, which
    # now reads this table too: roles granted before it existed keep starting.
    readers = await conn.fetch(
        "SELECT r.rolname FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a"
        " JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE c.oid = $1::regclass AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner",
        f"{quoted}.schema_migrations",
    )
    for reader in readers:
        await conn.execute(
            f"GRANT SELECT ON {quoted}.schema_functions TO {quote_identifier(reader['rolname'])}"
        )


#: The rights migrate gives back after a migration drops what holds them: per catalog, its
#: name, namespace, owner and ACL columns, and the right.
_RIGHTS = {
    "functions": ("pg_proc", "proname", "pronamespace", "proowner", "proacl", "EXECUTE"),
    "relations": ("pg_class", "relname", "relnamespace", "relowner", "relacl", "SELECT"),
}


async def _held_rights(
    conn: AnyConnection, schema: str, catalog: str
) -> list[tuple[int, str, int]]:
    """(oid, name, role oid) for every right of `catalog`'s kind (EXECUTE on functions,
    SELECT on tables and views) that a role other than the owner and PUBLIC holds on an
    object of the schema."""
    table, name, namespace, owner, acl, right = _RIGHTS[catalog]
    rows = await conn.fetch(
        f"SELECT DISTINCT o.oid, o.{name} AS name, a.grantee FROM pg_catalog.{table} o"
        f" CROSS JOIN LATERAL aclexplode(o.{acl}) a"
        f" WHERE o.{namespace} = $1::regnamespace AND a.privilege_type = '{right}'"
        f"   AND a.grantee <> 0 AND a.grantee <> o.{owner}",
        quote_identifier(schema),
    )
    return [(row["oid"], row["name"], row["grantee"]) for row in rows]


async def _give_back_reads(
    conn: AnyConnection, schema: str, readers: list[tuple[int, str, int]]
) -> None:
    """A view a migration dropped so a table could change (and the function files created
    again), or a table that became a view of the same name, may be read again by the roles
    that could read it before: a dashboard's role keeps reading queue_stats."""
    if not readers:
        return
    missing = await conn.fetch(
        "SELECT format('GRANT SELECT ON %s TO %I', c.oid::regclass, r.rolname) AS statement"
        " FROM unnest($2::oid[], $3::name[], $4::oid[]) AS g(old, relname, grantee)"
        " JOIN pg_roles r ON r.oid = g.grantee"
        " JOIN pg_class c ON c.relname = g.relname AND c.relnamespace = $1::regnamespace"
        " WHERE c.relkind = 'v' AND c.oid <> g.old"
        "   AND NOT has_table_privilege(g.grantee, c.oid, 'SELECT')",
        quote_identifier(schema),
        [oid for oid, _, _ in readers],
        [name for _, name, _ in readers],
        [grantee for _, _, grantee in readers],
    )
    for row in missing:
        await conn.execute(row["statement"])


async def _dropped_grants(
    conn: AnyConnection, held: list[tuple[int, str, int]]
) -> list[tuple[str, int]]:
    """(function name, role oid) of the rights in `held` whose function no longer exists."""
    if not held:
        return []
    gone = await conn.fetch(
        "SELECT g.oid FROM unnest($1::oid[]) AS g(oid)"
        " WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = g.oid)",
        sorted({oid for oid, _, _ in held}),
    )
    dropped = {row["oid"] for row in gone}
    return [(name, grantee) for oid, name, grantee in held if oid in dropped]


async def _apply_functions(
    conn: AnyConnection, schema: str, shipped: FunctionSet, grants: list[tuple[str, int]]
) -> None:
    quoted = quote_identifier(schema)
    # One round trip (a fresh schema installs in about half the time of a call per file);
    # on an error, file by file again to say which file failed.
    try:
        async with conn.transaction():
            await conn.execute("\n".join(render(sql, schema) for _, sql in shipped.files))
    except asyncpg.PostgresError:
        for name, template in shipped.files:
            try:
                await conn.execute(render(template, schema))
            except asyncpg.PostgresError as error:
                logger.error("scheduler/postgres/functions/%s.sql failed: %s", name, error)
                raise
        raise
    # CREATE OR REPLACE keeps a function's rights; a function a migration dropped and the
    # files created again gets back the rights its name had, role by role (`grants` holds
    # only the rights on dropped functions).
    missing = await conn.fetch(
        "SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', p.oid::regprocedure, r.rolname)"
        " AS statement"
        " FROM unnest($2::name[], $3::oid[]) AS g(proname, grantee)"
        " JOIN pg_roles r ON r.oid = g.grantee"
        " JOIN pg_proc p ON p.proname = g.proname AND p.pronamespace = $1::regnamespace"
        " WHERE NOT has_function_privilege(g.grantee, p.oid, 'EXECUTE')",
        quoted,
        [name for name, _ in grants],
        [grantee for _, grantee in grants],
    )
    for row in missing:
        await conn.execute(row["statement"])
    await conn.execute(
        f"INSERT INTO {quoted}.schema_functions (revision, checksum) VALUES ($1, $2)"
        " ON CONFLICT (only_row) DO UPDATE SET revision = EXCLUDED.revision,"
        " checksum = EXCLUDED.checksum, applied_at = now()",
        shipped.revision,
        shipped.checksum,
    )
    logger.info(
        "applied %d function files (revision %d) to schema %s",
        len(shipped.files),
        shipped.revision,
        schema,
    )


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
    """Raise unless the database schema is exactly the version this code knows, with the
    function set this release ships."""
    version = await current_version(conn, schema)
    _refuse_newer(version, schema)
    if version < latest_version():
        raise SchemaNotReadyError(
            f"schema {schema!r} is at version {version}, this release needs"
            f" {latest_version()}: run `scheduler migrate` (or `await scheduler.migrate()`),"
            " or start the scheduler with auto_migrate=True"
        )
    recorded = await applied_functions(conn, schema)
    _refuse_newer_functions(recorded, schema)
    shipped = function_set()
    if recorded != AppliedFunctions(shipped.revision, shipped.checksum):
        found = (
            "no recorded SQL functions"
            if recorded.checksum is None
            else f"SQL functions of revision {recorded.revision} ({recorded.checksum[:12]})"
        )
        raise SchemaFunctionsMismatchError(
            f"schema {schema!r} has {found}, this release ships revision"
            f" {shipped.revision} ({shipped.checksum[:12]}): run `scheduler migrate` (or"
            " `await scheduler.migrate()`), or start the scheduler with auto_migrate=True"
        )


def _refuse_newer(version: int, schema: str) -> None:
    if version > latest_version():
        raise SchemaTooNewError(
            f"schema {schema!r} is at version {version}, newer than this release of"
            f" scheduler knows ({latest_version()}); upgrade the scheduler package on this"
            " replica instead of running an older release against a newer database"
        )


def _refuse_newer_functions(recorded: AppliedFunctions, schema: str) -> None:
    shipped = function_set()
    if recorded.revision > shipped.revision:
        raise SchemaTooNewError(
            f"schema {schema!r} has SQL functions of revision {recorded.revision}, newer than"
            f" this release of scheduler ships ({shipped.revision}); upgrade the scheduler"
            " package on this replica instead of running an older release against a newer"
            " database"
        )
