"""Bulk enqueue by COPY (RAISE batches without dependencies or unique keys): the rows, the
errors, the transactions and the notifications are those of the unnest statement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from scheduler import ConflictResolution, JobAlreadyExistsError
from scheduler.postgres import store as store_module
from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import channel_for, quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.store import NewJob
from tests.support.db import TEST_DSN

#: Every column of a job row but its id.
COLUMNS = (
    "task_name, args, kwargs, status, priority, execution_time, attempts, failures,"
    " lost_leases, max_retries, timeout_seconds, last_error, error_type, error_message,"
    " lease_owner, cancel_requested_at, created_at, updated_at, started_at, finished_at,"
    " schedule_id, fire_time, result, queue, lock_key, unique_key, trace_context, awaited,"
    " claimed_at, blocked_by, has_dependants"
)


class CopySpy:
    """Records whether each batch went by COPY (`_copy_jobs` returned True)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.results: list[bool] = []
        original = PostgresJobStore._copy_jobs

        async def spy(store: PostgresJobStore, *args: Any, **kwargs: Any) -> bool:
            copied = await original(store, *args, **kwargs)
            self.results.append(copied)
            return copied

        monkeypatch.setattr(PostgresJobStore, "_copy_jobs", spy)


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> CopySpy:
    return CopySpy(monkeypatch)


def no_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every batch through the unnest statement."""
    monkeypatch.setattr(store_module, "COPY_MIN_ROWS", 10**9)
    monkeypatch.setattr(store_module, "COPY_MIN_ROWS_IN_TRANSACTION", 10**9)


def job(job_id: str, **fields: Any) -> NewJob:
    values: dict[str, Any] = {
        "job_id": job_id,
        "task_name": "tests.support.jobs:record",
        "args_json": "[]",
        "kwargs_json": "{}",
        "priority": 5,
        "execution_time": None,
        "delay_seconds": None,
        "max_retries": 0,
        "timeout": None,
    }
    values.update(fields)
    return NewJob(**values)


def varied_batch(prefix: str) -> list[NewJob]:
    """Delays (fractional ones among them), explicit times, priorities, queues, keys,
    timeouts, arguments and trace contexts."""
    when = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    batch = []
    for n in range(40):
        kind = n % 4
        batch.append(
            job(
                f"{prefix}-{n}",
                task_name=f"tests.support.jobs:task_{n % 3}",
                args_json=json.dumps([n, "x" * n]),
                kwargs_json=json.dumps({"n": n}),
                priority=(1, 5, 10, 20)[n % 4],
                execution_time=when + timedelta(seconds=n) if kind == 0 else None,
                delay_seconds=(None, None, 0.0, 1.2345675 * n)[kind] if kind else None,
                max_retries=n % 5,
                timeout=None if n % 2 else 0.5 + n,
                queue=f"q{n % 2}",
                lock_key=None if n % 3 else f"lock-{n}",
                trace_context=None if n % 2 else json.dumps({"traceparent": f"00-{n:032x}-01"}),
            )
        )
    return batch


async def rows(conn: AnyConnection, schema: str, prefix: str) -> list[tuple[Any, ...]]:
    records = await conn.fetch(
        f"SELECT {COLUMNS} FROM {quote_identifier(schema)}.jobs WHERE job_id LIKE $1"
        " ORDER BY length(job_id), job_id",
        f"{prefix}-%",
    )
    return [tuple(record) for record in records]


async def count(pool: asyncpg.Pool, schema: str) -> int:
    n: int = await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(schema)}.jobs")
    return n


async def test_copy_writes_the_rows_the_statement_writes(
    pool: asyncpg.Pool, migrated: str, copies: CopySpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths in one transaction see the same now(): every column must match."""
    store = PostgresJobStore(pool, migrated)
    async with pool.acquire() as conn, conn.transaction():
        await store.insert_jobs(varied_batch("copy"), ConflictResolution.RAISE, conn)
        assert copies.results == [True]
        with monkeypatch.context() as patch:
            no_copy(patch)
            await store.insert_jobs(varied_batch("stmt"), ConflictResolution.RAISE, conn)
        assert copies.results == [True, False]
        copied, stated = await rows(conn, migrated, "copy"), await rows(conn, migrated, "stmt")
    assert len(copied) == 40 and copied == stated


@pytest.mark.parametrize("delays", [False, True])
async def test_copy_on_its_own_connection_times_rows_by_the_database_clock(
    pool: asyncpg.Pool, migrated: str, copies: CopySpy, delays: bool
) -> None:
    """Due now: execution_time takes its default now(); with delays, now() read in the
    COPY's transaction plus the delay. Either way created_at is that same now()."""
    store = PostgresJobStore(pool, migrated)
    batch = [job(f"own-{n}", delay_seconds=0.25 * n if delays else None) for n in range(1, 31)]
    await store.insert_jobs(batch, ConflictResolution.RAISE)
    assert copies.results == [True]
    async with pool.acquire() as conn:
        found = await conn.fetch(
            f"SELECT job_id, execution_time - created_at AS lead"
            f" FROM {quote_identifier(migrated)}.jobs"
        )
    leads = {row["job_id"]: row["lead"] for row in found}
    assert leads == {j.job_id: timedelta(seconds=j.delay_seconds or 0) for j in batch}


@pytest.mark.parametrize("path", ["copy", "statement"])
async def test_an_existing_id_raises_the_same_error_and_writes_nothing(
    pool: asyncpg.Pool,
    migrated: str,
    copies: CopySpy,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    store = PostgresJobStore(pool, migrated)
    await store.insert_jobs([job("taken")], ConflictResolution.RAISE)
    if path == "statement":
        no_copy(monkeypatch)
    batch = [job(f"new-{n}") for n in range(30)]
    batch[17] = job("taken", delay_seconds=5.0)
    with pytest.raises(JobAlreadyExistsError) as info:
        await store.insert_jobs(batch, ConflictResolution.RAISE)
    assert info.value.job_id == "taken"
    assert str(info.value).startswith("a job with id 'taken' already exists")
    assert copies.results == [False]  # the COPY failed whole; the statement named the id
    assert await count(pool, migrated) == 1


async def test_a_conflict_in_the_callers_transaction_leaves_it_usable(
    pool: asyncpg.Pool, migrated: str, copies: CopySpy
) -> None:
    store = PostgresJobStore(pool, migrated)
    await store.insert_jobs([job("taken")], ConflictResolution.RAISE)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await store.insert_jobs(
                [job(f"first-{n}") for n in range(25)], ConflictResolution.RAISE, conn
            )
            with pytest.raises(JobAlreadyExistsError, match="'taken'"):
                await store.insert_jobs(
                    [job(f"second-{n}") for n in range(25)] + [job("taken")],
                    ConflictResolution.RAISE,
                    conn,
                )
        assert copies.results == [True, False]
    # The first batch committed with the caller's transaction; the second left nothing.
    assert await count(pool, migrated) == 26


async def test_a_copy_in_the_callers_transaction_rolls_back_with_it(
    pool: asyncpg.Pool, migrated: str, copies: CopySpy
) -> None:
    store = PostgresJobStore(pool, migrated)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await store.insert_jobs([job(f"tx-{n}") for n in range(30)], ConflictResolution.RAISE, conn)
        assert await conn.fetchval(f"SELECT count(*) FROM {quote_identifier(migrated)}.jobs") == 30
        await transaction.rollback()
    assert copies.results == [True]
    assert await count(pool, migrated) == 0


@pytest.mark.parametrize("path", ["copy", "statement"])
async def test_the_tables_checks_hold_for_copy_as_for_the_statement(
    pool: asyncpg.Pool, migrated: str, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Rows that get past Python's validation (a caller of the store) still meet the
    table's CHECKs, and the batch writes nothing."""
    store = PostgresJobStore(pool, migrated)
    if path == "statement":
        no_copy(monkeypatch)
    bad: Sequence[NewJob] = [job("bad-priority", priority=7), job("bad-args", args_json="{}")]
    for one in bad:
        batch = [job(f"ok-{n}") for n in range(30)] + [one]
        with pytest.raises(asyncpg.CheckViolationError):
            await store.insert_jobs(batch, ConflictResolution.RAISE)
    assert await count(pool, migrated) == 0


async def test_a_copied_batch_notifies_its_due_time(
    pool: asyncpg.Pool, migrated: str, copies: CopySpy
) -> None:
    """The statement-level AFTER INSERT trigger fires for COPY: one 'due' notification."""
    store = PostgresJobStore(pool, migrated)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(TEST_DSN)
    try:
        await listener.add_listener(channel_for(migrated), lambda *args: heard.put_nowait(args[-1]))
        await store.insert_jobs(
            [job(f"due-{n}", delay_seconds=3.0 + n) for n in range(30)], ConflictResolution.RAISE
        )
        payload = await asyncio.wait_for(heard.get(), timeout=5)
    finally:
        await listener.close()
    assert copies.results == [True]
    kind, delay = payload.split()
    assert kind == "due" and 2.0 < float(delay) <= 3.0
