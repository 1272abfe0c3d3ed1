"""Issue 19.8: rows failed before the error parts existed get them from their text when
the schema is migrated, once: re-applying the function files later scans nothing."""

from __future__ import annotations

import asyncpg

from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.support.schema_catalog import install_head

#: The migration that adds error_type and error_message (0012).
ERROR_PARTS = next(m for m in migrations.known_migrations() if m.name == "error_parts")

TRACEBACK = "\n".join(
    [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in f',
        "    g()",
        "KeyError: 'k'",
    ]
)


async def test_existing_failures_get_their_type_and_message_from_the_old_text(
    pool: asyncpg.Pool, schema: str
) -> None:
    q = quote_identifier(schema)
    async with pool.acquire() as conn:
        # A schema as an older release left it (install_head builds 0010, the last before the
        # function files), with a failed job and attempt; migrate() then applies the rest.
        await install_head(conn, schema, up_to=ERROR_PARTS.version - 1)
        await conn.execute(f"SELECT {q}.schedule_job('t:x', job_id => 'old')")
        await conn.execute(f"UPDATE {q}.jobs SET status = 'failed', last_error = $1", TRACEBACK)
        await conn.execute(
            f"INSERT INTO {q}.job_attempts (job_id, attempt, outcome, error)"
            " VALUES ('old', 1, 'failed', 'disk full\nsecond line')"
        )
        assert ERROR_PARTS.version in await migrations.migrate(conn, schema)
        job = await conn.fetchrow(f"SELECT error_type, error_message, last_error FROM {q}.jobs")
        attempt = await conn.fetchrow(f"SELECT error_type, error_message FROM {q}.job_attempts")
    assert job is not None and attempt is not None
    assert (job["error_type"], job["error_message"], job["last_error"]) == (
        "KeyError",
        "'k'",
        TRACEBACK,
    )
    assert (attempt["error_type"], attempt["error_message"]) == (None, "disk full")


async def test_reapplying_the_function_files_leaves_the_rows_alone(
    pool: asyncpg.Pool, schema: str
) -> None:
    """The fill-in runs only in the transaction that applied the migration: a later release
    that re-applies the files (here: a recorded checksum that differs) rewrites no row."""
    q = quote_identifier(schema)
    async with pool.acquire() as conn:
        await migrations.migrate(conn, schema)
        await conn.execute(f"SELECT {q}.schedule_job('t:x', job_id => 'later')")
        # A row whose parts are missing, as the trigger would never leave it: the probe.
        await conn.execute(f"ALTER TABLE {q}.jobs DISABLE TRIGGER jobs_error_parts_on_update")
        await conn.execute(f"UPDATE {q}.jobs SET status = 'failed', last_error = $1", TRACEBACK)
        await conn.execute(f"ALTER TABLE {q}.jobs ENABLE TRIGGER jobs_error_parts_on_update")
        await conn.execute(f"UPDATE {q}.schema_functions SET checksum = 'an older set'")
        assert await migrations.migrate(conn, schema) == []
        assert await migrations.applied_functions(conn, schema) == migrations.AppliedFunctions(
            migrations.function_set().revision, migrations.function_set().checksum
        )
        row = await conn.fetchrow(f"SELECT error_type, error_message FROM {q}.jobs")
    assert row is not None and (row["error_type"], row["error_message"]) == (None, None)
