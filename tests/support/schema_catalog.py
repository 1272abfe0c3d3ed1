"""What a schema is made of, read from the catalog, for comparing two schemas; and today's
head migrations (commit d82bdda, before the SQL moved to functions/) read from git."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import quote_identifier, render

#: The last commit whose migrations held the function bodies (the upgrade source).
HEAD_BEFORE_FUNCTION_FILES = "d82bdda"
_ROOT = Path(__file__).resolve().parents[2]
_FOLDER = "scheduler/postgres/migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


@cache
def _head_migrations() -> tuple[tuple[int, str, str], ...] | str:
    try:
        names = _git("ls-tree", "--name-only", f"{HEAD_BEFORE_FUNCTION_FILES}:{_FOLDER}").split()
        found = []
        for name in sorted(names):
            match = _MIGRATION_FILE.match(name)
            if match:
                text = _git("show", f"{HEAD_BEFORE_FUNCTION_FILES}:{_FOLDER}/{name}")
                found.append((int(match[1]), match[2], text))
    except (OSError, subprocess.SubprocessError) as error:
        return f"{type(error).__name__}: {error}"
    return tuple(found)


def head_migrations() -> tuple[tuple[int, str, str], ...]:
    """Today's head migrations, or skip: building the old schema needs git and the commit."""
    found = _head_migrations()
    if isinstance(found, str):
        pytest.skip(
            f"needs git and commit {HEAD_BEFORE_FUNCTION_FILES} of the repository at {_ROOT}"
            f" to build a schema with the migrations of before functions/ ({found})"
        )
    return found


async def install_head(conn: AnyConnection, schema: str, up_to: int | None = None) -> int:
    """Build `schema` as today's head `migrate` did (to version `up_to`); return its version."""
    quoted = quote_identifier(schema)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE {quoted}.schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        chosen = [m for m in head_migrations() if up_to is None or m[0] <= up_to]
        for version, name, template in chosen:
            await conn.execute(render(template, schema))
            await conn.execute(
                f"INSERT INTO {quoted}.schema_migrations (version, name) VALUES ($1, $2)",
                version,
                name,
            )
    return chosen[-1][0]


_CATALOG: dict[str, str] = {
    "functions": """
        SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
               pg_get_function_result(p.oid) AS result, pg_get_functiondef(p.oid) AS definition,
               p.prosecdef AS security_definer, p.provolatile AS volatility,
               p.proparallel AS parallel, p.proconfig AS config, p.proacl::text[] AS grants,
               pg_get_userbyid(p.proowner) AS owner
        FROM pg_proc p WHERE p.pronamespace = $1::regnamespace
        ORDER BY 1, 2""",
    "relations": """
        SELECT c.relname AS name, c.relkind AS kind, c.relacl::text[] AS grants,
               CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END AS definition,
               pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind <> 'S'
        ORDER BY 1""",
    "columns": """
        SELECT c.relname AS relation, a.attnum AS position, a.attname AS name,
               format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
               pg_get_expr(d.adbin, d.adrelid) AS default_value, a.attacl::text[] AS grants
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = $1::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'v', 'c', 'p')
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text AS relation, contypid::regtype::text AS domain,
               conname AS name, pg_get_constraintdef(oid) AS definition
        FROM pg_constraint WHERE connamespace = $1::regnamespace
        ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT c.relname AS name, pg_get_indexdef(c.oid) AS definition FROM pg_class c
        WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('i', 'I') ORDER BY 1""",
    "triggers": """
        SELECT t.tgrelid::regclass::text AS relation, t.tgname AS name,
               pg_get_triggerdef(t.oid) AS definition, t.tgenabled AS enabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
        ORDER BY 1, 2""",
    "types": """
        SELECT t.typname AS name, t.typtype AS kind FROM pg_type t
        WHERE t.typnamespace = $1::regnamespace AND t.typtype IN ('c', 'd', 'e')
          AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
        ORDER BY 1""",
    "schema": """
        SELECT nspacl::text[] AS grants, pg_get_userbyid(nspowner) AS owner
        FROM pg_namespace WHERE oid = $1::regnamespace""",
}


async def catalog(conn: asyncpg.Connection | asyncpg.Pool, schema: str) -> dict[str, Any]:
    """Everything `migrate` builds in `schema` (bar the rows), the schema's name replaced by
    {schema}, so two schemas built different ways compare equal exactly when they agree."""
    result: dict[str, Any] = {}
    for part, query in _CATALOG.items():
        rows = await conn.fetch(query, quote_identifier(schema))
        result[part] = [_normalise(dict(row), schema) for row in rows]
    return result


def _normalise(value: Any, schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(schema, "{schema}")
    if isinstance(value, dict):
        return {key: _normalise(item, schema) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item, schema) for item in value]
    return value


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """Readable differences between two catalogs (empty when they agree)."""
    found: list[str] = []
    for part in left.keys() | right.keys():
        a = {repr(row) for row in left.get(part, [])}
        b = {repr(row) for row in right.get(part, [])}
        found += [f"{part}: only in the first:  {row}" for row in sorted(a - b)]
        found += [f"{part}: only in the second: {row}" for row in sorted(b - a)]
        if a == b and left.get(part) != right.get(part):
            found.append(f"{part}: same rows in another order")
    return found
