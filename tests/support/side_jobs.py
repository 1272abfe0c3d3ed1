"""Tasks for replica processes: every attempt writes its start and end to a side table,
so a test can see from outside which attempt ran where and how often."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

import anyio
import asyncpg

from scheduler import Snooze, current_job
from scheduler.postgres.sql import quote_identifier

_pool: asyncpg.Pool | None = None
_schema = ""


def configure(pool: asyncpg.Pool, schema: str) -> None:
    global _pool, _schema
    _pool, _schema = pool, schema


def side_table_sql(schema: str) -> str:
    return (
        # Times are the job's own clock (the host's, like the database's): started_at is
        # taken at the job's first line, so a freeze between that line and the INSERT does
        # not date the start after the resume; an end is when the job's code stopped.
        # Until attempt numbers stop repeating (a graceful release gave the number back on
        # the old engine), (job_id, attempt) is not a key: rows are addressed by id.
        f"CREATE TABLE {quote_identifier(schema)}.executions ("
        " id bigserial PRIMARY KEY, job_id text NOT NULL, attempt integer NOT NULL,"
        " pid integer NOT NULL, worker_id uuid NOT NULL, started_at timestamptz NOT NULL,"
        " finished_at timestamptz, failed_at timestamptz, cancelled_at timestamptz)"
    )


async def _started() -> int:
    """Records this attempt's start; returns its row id for the end to update.

    A cancel that lands while the INSERT is in flight (a fence right at the start) stops
    the code here, but the row may still be written: then its end is recorded too (when the
    code stopped), or the attempt would look unfinished, hence "overlapping" its successor."""
    started_at = time.time()
    job = current_job()
    assert _pool is not None
    insert = asyncio.ensure_future(
        _pool.fetchval(
            f"INSERT INTO {quote_identifier(_schema)}.executions"
            " (job_id, attempt, pid, worker_id, started_at)"
            " VALUES ($1, $2, $3, $4, to_timestamp($5)) RETURNING id",
            job.job_id,
            job.attempt,
            os.getpid(),
            job.worker_id,
            started_at,
        )
    )
    try:
        row_id: int = await asyncio.shield(insert)
    except asyncio.CancelledError:
        # In a task of its own: the runner may cancel this one again before the row is in.
        end = asyncio.ensure_future(_end_once_started(insert, time.time()))
        _end_writes.add(end)
        end.add_done_callback(_end_writes.discard)
        raise
    return row_id


async def _end_once_started(insert: asyncio.Future[int], stopped_at: float) -> None:
    with contextlib.suppress(Exception):  # no row written: no start, nothing to end
        row_id = await asyncio.wait_for(insert, END_WRITE_SECONDS)
        await _write_end(row_id, "cancelled_at", stopped_at)


#: How long an end write is retried: right after a database restart the pool hands out
#: connections the restart broke (each fails once) and the server is slow. Bounded: with
#: the database away for longer the end stays unknown, as after a SIGKILL.
END_WRITE_SECONDS = 5.0
#: End writes under way; a strong reference each, so none is collected mid-write.
_end_writes: set[asyncio.Task[None]] = set()


async def _ended(row_id: int, column: str = "finished_at", at: float | None = None) -> None:
    """Records when this attempt's code stopped (now, unless `at` says).

    The write runs in a task of its own, which no cancel of the job's task interrupts: the
    runner cancels a job again on every heartbeat while it still runs after a lost lease or
    a cancel request, and a second asyncio cancel goes through anyio's shield. An end cut
    that way would leave the attempt looking unfinished, hence "overlapping" whatever ran
    the job next, though its code stopped long before."""
    ended_at = time.time() if at is None else at
    assert column in ("finished_at", "failed_at", "cancelled_at")
    write = asyncio.ensure_future(_write_end(row_id, column, ended_at))
    _end_writes.add(write)
    write.add_done_callback(_end_writes.discard)
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        # Evidence for the soak's post-mortem: the end the old recorder would have lost.
        job = current_job()
        logging.getLogger("side_jobs").warning(
            "job %s attempt %d cancelled while writing its %s; the write goes on",
            job.job_id,
            job.attempt,
            column,
        )
        raise


async def _write_end(row_id: int, column: str, ended_at: float) -> None:
    assert _pool is not None
    deadline = time.monotonic() + END_WRITE_SECONDS
    while True:
        try:
            await _pool.execute(
                f"UPDATE {quote_identifier(_schema)}.executions SET {column} = to_timestamp($2)"
                " WHERE id = $1 AND finished_at IS NULL AND failed_at IS NULL"
                " AND cancelled_at IS NULL",
                row_id,
                ended_at,
            )
            return
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _recording_a_cancel(row_id: int) -> AsyncIterator[None]:
    """A cancelled attempt (fenced, shut down, cancelled) records when it stopped, so an
    attempt that stopped before a peer took the job over is not mistaken for an overlap.
    The time is taken when the code stops (see _ended for how the write survives)."""
    try:
        yield
    except anyio.get_cancelled_exc_class():
        await _ended(row_id, "cancelled_at")
        raise


async def work(seconds: float) -> None:
    row_id = await _started()
    async with _recording_a_cancel(row_id):
        await anyio.sleep(seconds)
    await _ended(row_id)


async def fail_slowly_on_first_attempt(seconds: float) -> None:
    """Attempt 1 works for a while then fails; later attempts succeed at once."""
    row_id = await _started()
    if current_job().attempt == 1:
        async with _recording_a_cancel(row_id):
            await anyio.sleep(seconds)
        await _ended(row_id)
        raise RuntimeError("the first attempt's outcome must never be recorded")
    await _ended(row_id)


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be turned into a string")


#: Exceptions an outcome write cannot store as they are (NUL, a lone surrogate, no str(),
#: megabytes): the scheduler must still record a failure and move on.
UNRECORDABLE: dict[str, Callable[[], Exception]] = {
    "nul": lambda: ValueError("bad\x00byte"),
    "surrogate": lambda: ValueError("lone \ud800 surrogate"),
    "unprintable": UnprintableError,
    "huge": lambda: ValueError("x" * 3_000_000),
}


async def soak(kind: str, seconds: float) -> None:
    """The chaos soak's workload: 'ok' works for `seconds`; 'fail' always raises;
    'flaky' fails its first attempt only; 'snooze' snoozes its first attempt for `seconds`;
    an UNRECORDABLE kind always raises its exception."""
    row_id = await _started()
    async with _recording_a_cancel(row_id):
        await anyio.sleep(seconds)
    if kind in UNRECORDABLE:
        await _ended(row_id, "failed_at")
        raise UNRECORDABLE[kind]()
    if kind == "fail" or (kind == "flaky" and current_job().attempt == 1):
        await _ended(row_id, "failed_at")
        raise RuntimeError(f"{kind} job failing on purpose")
    if kind == "snooze" and current_job().attempt == 1:
        await _ended(row_id, "cancelled_at")  # the code stopped here; it runs again later
        raise Snooze(seconds)
    await _ended(row_id)


async def poison() -> None:
    """Kills the process running it, every time."""
    await _started()
    os.kill(os.getpid(), signal.SIGKILL)


async def kill_then_fail_then_succeed() -> None:
    """Attempt 1 kills its process (a lost lease), attempt 2 raises (a failure), later
    attempts succeed: the two budgets must be spent separately."""
    row_id = await _started()
    attempt = current_job().attempt
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if attempt == 2:
        await _ended(row_id, "failed_at")
        raise RuntimeError("the second attempt fails on purpose")
    await _ended(row_id)


async def work_then_answer(seconds: float, answer: str) -> str:
    """Works like `work`, then returns `answer` (the job's result)."""
    await work(seconds)
    return answer
