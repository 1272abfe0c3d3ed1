"""Tasks for replica processes: every attempt writes its start and end to a side table,
so a test can see from outside which attempt ran where and how often."""

from __future__ import annotations

import os
import signal

import anyio
import asyncpg

from scheduler import current_job
from scheduler.postgres.sql import quote_identifier

_pool: asyncpg.Pool | None = None
_schema = ""


def configure(pool: asyncpg.Pool, schema: str) -> None:
    global _pool, _schema
    _pool, _schema = pool, schema


def side_table_sql(schema: str) -> str:
    return (
        # An attempt released by a graceful shutdown does not count, so its number comes
        # again: (job_id, attempt) is not a key.
        f"CREATE TABLE {quote_identifier(schema)}.executions ("
        " id bigserial PRIMARY KEY, job_id text NOT NULL, attempt integer NOT NULL,"
        " pid integer NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz,"
        " failed_at timestamptz)"
    )


async def _started() -> None:
    job = current_job()
    assert _pool is not None
    await _pool.execute(
        f"INSERT INTO {quote_identifier(_schema)}.executions"
        " (job_id, attempt, pid, started_at) VALUES ($1, $2, $3, clock_timestamp())",
        job.job_id,
        job.attempt,
        os.getpid(),
    )


async def _finished(column: str = "finished_at") -> None:
    job = current_job()
    assert _pool is not None
    assert column in ("finished_at", "failed_at")
    await _pool.execute(
        f"UPDATE {quote_identifier(_schema)}.executions SET {column} = clock_timestamp()"
        " WHERE job_id = $1 AND attempt = $2 AND pid = $3"
        " AND finished_at IS NULL AND failed_at IS NULL",
        job.job_id,
        job.attempt,
        os.getpid(),
    )


async def work(seconds: float) -> None:
    await _started()
    await anyio.sleep(seconds)
    await _finished()


async def fail_slowly_on_first_attempt(seconds: float) -> None:
    """Attempt 1 works for a while then fails; later attempts succeed at once."""
    await _started()
    if current_job().attempt == 1:
        await anyio.sleep(seconds)
        await _finished()
        raise RuntimeError("the first attempt's outcome must never be recorded")
    await _finished()


async def soak(kind: str, seconds: float) -> None:
    """The chaos soak's workload: 'ok' works for `seconds`; 'fail' always raises;
    'flaky' fails its first attempt only."""
    await _started()
    await anyio.sleep(seconds)
    if kind == "fail" or (kind == "flaky" and current_job().attempt == 1):
        await _finished("failed_at")
        raise RuntimeError(f"{kind} job failing on purpose")
    await _finished()


async def poison() -> None:
    """Kills the process running it, every time."""
    await _started()
    os.kill(os.getpid(), signal.SIGKILL)


async def kill_then_fail_then_succeed() -> None:
    """Attempt 1 kills its process (a lost lease), attempt 2 raises (a failure), later
    attempts succeed: the two budgets must be spent separately."""
    await _started()
    attempt = current_job().attempt
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if attempt == 2:
        await _finished("failed_at")
        raise RuntimeError("the second attempt fails on purpose")
    await _finished()
