"""Issue 19.8: rows failed before the error parts existed get them from their text when
the schema is migrated."""

from __future__ import annotations

import asyncpg

from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier, render

#: The migration that adds error_type and error_message (0012 once merged after 0011).
ERROR_PARTS = next(m for m in migrations.known_migrations() if m.name.endswith("error_parts"))


async def test_existing_failures_get_their_type_and_message_from_the_old_text(
    pool: asyncpg.Pool, schema: str
) -> None:
    q = quote_identifier(schema)
    earlier = [m for m in migrations.known_migrations() if m.version < ERROR_PARTS.version]
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {q}")
        for migration in earlier:
            await conn.execute(render(migration.template, schema))
        await conn.execute(f"SELECT {q}.schedule_job('t:x', job_id => 'old')")
        traceback = (
            "Traceback (most recent call last):\n"
            '  File "a.py", line 1, in f\n'
            "    g()\n"
            "KeyError: 'k'"
        )
        await conn.execute(f"UPDATE {q}.jobs SET status = 'failed', last_error = $1", traceback)
        await conn.execute(render(ERROR_PARTS.template, schema))
        row = await conn.fetchrow(f"SELECT error_type, error_message, last_error FROM {q}.jobs")
    assert row is not None
    assert (row["error_type"], row["error_message"], row["last_error"]) == (
        "KeyError",
        "'k'",
        traceback,
    )
