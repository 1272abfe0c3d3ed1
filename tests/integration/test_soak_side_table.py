"""The chaos soak's side table must record when an attempt's code stopped even when the
runner cancels the job again while that end is being written (it does so on every
heartbeat after a lost lease). An end lost that way made an attempt that stopped in time
look like it overlapped the peer that ran the job next (the 3 "overlaps" of soak seed
938653, all right after a database restart)."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from scheduler.context import JobContext, set_current_job
from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import wait_until


async def _row(pool: asyncpg.Pool, schema: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT * FROM {quote_identifier(schema)}.executions"
    )
    return row


async def _end_write_blocked(pool: asyncpg.Pool) -> bool:
    """Whether an UPDATE of the side table waits for the test's advisory lock."""
    waiting: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
        " AND query LIKE 'UPDATE %executions%'"
    )
    return waiting > 0


@pytest.mark.parametrize(
    ("seconds", "cancels_before_block", "column"),
    [
        # Cancelled while working (a fence), then again while its cancel end is written.
        (30.0, 1, "cancelled_at"),
        # Finished working, then cancelled while its end is written.
        (0.0, 0, "finished_at"),
    ],
)
async def test_an_end_being_written_survives_a_cancel(
    pool: asyncpg.Pool, schema: str, seconds: float, cancels_before_block: int, column: str
) -> None:
    await pool.execute(f"CREATE SCHEMA {quote_identifier(schema)}")
    await pool.execute(side_jobs.side_table_sql(schema))
    side_jobs.configure(pool, schema)

    async def attempt() -> None:
        set_current_job(JobContext("job-1", "soak", 1, uuid.uuid4()))
        await side_jobs.soak("ok", seconds)

    # Every end write waits for an advisory lock held here until the job was cancelled.
    q = quote_identifier(schema)
    await pool.execute(
        f"CREATE FUNCTION {q}.wait_for_test() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_advisory_xact_lock(938653); RETURN NEW; END $$;"
        f" CREATE TRIGGER wait_for_test BEFORE UPDATE ON {q}.executions"
        f" FOR EACH ROW EXECUTE FUNCTION {q}.wait_for_test()"
    )
    async with pool.acquire() as blocker:
        await blocker.execute("SELECT pg_advisory_lock(938653)")
        try:
            task = asyncio.ensure_future(attempt())
            await wait_until(lambda: _row(pool, schema), message="the start row")
            for _ in range(cancels_before_block):
                task.cancel()  # a fence: the job stops working and writes its end
            await wait_until(lambda: _end_write_blocked(pool), message="the end write to wait")
            task.cancel()  # the runner's next cancel, while the end is being written
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            stopped_by = time.time()
        finally:
            await blocker.execute("SELECT pg_advisory_unlock(938653)")

    async def ended() -> asyncpg.Record | None:
        row = await _row(pool, schema)
        return row if row is not None and row[column] is not None else None

    recorded = await wait_until(ended, message=f"{column} to be recorded")
    assert recorded is not None
    assert recorded[column].timestamp() <= stopped_by  # when the code stopped, not later
    assert [c for c in ("finished_at", "failed_at", "cancelled_at") if recorded[c]] == [column]


async def test_a_start_being_written_when_the_cancel_lands_gets_its_end(
    pool: asyncpg.Pool, schema: str
) -> None:
    """A fence right at the start: the cancel lands while the start row's INSERT is in
    flight. The row is still written; the end must be too (soak run of 2026-12-07, job
    01a24e19-b210: fenced at its first line, "abandoned", ended "never")."""
    await pool.execute(f"CREATE SCHEMA {quote_identifier(schema)}")
    await pool.execute(side_jobs.side_table_sql(schema))
    side_jobs.configure(pool, schema)

    async def attempt() -> None:
        set_current_job(JobContext("job-1", "soak", 1, uuid.uuid4()))
        await side_jobs.soak("ok", 30.0)

    q = quote_identifier(schema)
    await pool.execute(
        f"CREATE FUNCTION {q}.wait_for_test() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_advisory_xact_lock(938654); RETURN NEW; END $$;"
        f" CREATE TRIGGER wait_for_test BEFORE INSERT ON {q}.executions"
        f" FOR EACH ROW EXECUTE FUNCTION {q}.wait_for_test()"
    )

    async def insert_blocked() -> bool:
        waiting: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
            " AND query LIKE 'INSERT %executions%'"
        )
        return waiting > 0

    async with pool.acquire() as blocker:
        await blocker.execute("SELECT pg_advisory_lock(938654)")
        try:
            task = asyncio.ensure_future(attempt())
            await wait_until(insert_blocked, message="the start write to wait")
            task.cancel()  # the fence, while the start is being written
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            stopped_by = time.time()
        finally:
            await blocker.execute("SELECT pg_advisory_unlock(938654)")

    async def ended() -> asyncpg.Record | None:
        row = await _row(pool, schema)
        return row if row is not None and row["cancelled_at"] is not None else None

    recorded = await wait_until(ended, message="cancelled_at to be recorded")
    assert recorded is not None
    assert recorded["cancelled_at"].timestamp() <= stopped_by
