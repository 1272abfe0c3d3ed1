"""Transactional enqueue through the async connections applications hold: SQLAlchemy's
AsyncSession and AsyncConnection (asyncpg, and psycopg, drivers) and psycopg 3's
AsyncConnection. Against the real libraries and PostgreSQL: the job commits or rolls back
with the application's own writes, a rolled-back savepoint takes only its own jobs, and a
refused enqueue raises the typed error, writes nothing and leaves the transaction usable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from scheduler import (
    ArgumentsNotSerializableError,
    ConflictResolution,
    InvalidJobError,
    JobAlreadyExistsError,
    JobRequest,
    JobStatus,
    UniqueKeyConflictError,
    UnknownDependencyError,
)
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, count_jobs, has_status, wait_until


class Rollback(Exception):
    """Raised inside a transaction block to roll it back."""


@dataclass
class Tx:
    """One open transaction of the application: what to pass as `connection=`, how to
    write an application row in it, and how to open a savepoint inside it."""

    conn: Any
    write: Callable[[str], Awaitable[None]]
    savepoint: Callable[[], contextlib.AbstractAsyncContextManager[Any]]


Stack = Callable[[], contextlib.AbstractAsyncContextManager[Tx]]


def _url(driver: str) -> str:
    return TEST_DSN.replace("postgresql://", f"postgresql+{driver}://", 1)


@pytest.fixture(
    params=[
        "sqlalchemy-session-asyncpg",
        "sqlalchemy-connection-asyncpg",
        "sqlalchemy-session-psycopg",
        "psycopg-async",
    ]
)
async def stack(request: pytest.FixtureRequest, migrated: str) -> AsyncIterator[Stack]:
    """Opens transactions of one stack; the test schema has an `app_rows` table."""
    table = f"{quote_identifier(migrated)}.app_rows"
    admin = await asyncpg.connect(TEST_DSN)
    await admin.execute(f"CREATE TABLE {table} (name text)")
    await admin.close()
    kind: str = request.param
    engine: AsyncEngine | None = None
    if kind.startswith("sqlalchemy"):
        engine = create_async_engine(_url(kind.rsplit("-", 1)[1]), pool_size=2)
    insert = f"INSERT INTO {table} (name) VALUES (:name)"

    @contextlib.asynccontextmanager
    async def sqlalchemy_session() -> AsyncIterator[Tx]:
        assert engine is not None
        async with async_sessionmaker(engine)() as session, session.begin():

            async def write(name: str) -> None:
                await session.execute(text(insert), {"name": name})

            yield Tx(session, write, session.begin_nested)

    @contextlib.asynccontextmanager
    async def sqlalchemy_connection() -> AsyncIterator[Tx]:
        assert engine is not None
        async with engine.connect() as conn, conn.begin():

            async def write(name: str) -> None:
                await conn.execute(text(insert), {"name": name})

            yield Tx(conn, write, conn.begin_nested)

    @contextlib.asynccontextmanager
    async def psycopg_async() -> AsyncIterator[Tx]:
        async with (
            await psycopg.AsyncConnection.connect(TEST_DSN) as conn,
            conn.transaction(),
        ):

            async def write(name: str) -> None:
                await conn.execute(f"INSERT INTO {table} (name) VALUES (%s)", (name,))

            yield Tx(conn, write, conn.transaction)

    opened = {
        "sqlalchemy-session-asyncpg": sqlalchemy_session,
        "sqlalchemy-session-psycopg": sqlalchemy_session,
        "sqlalchemy-connection-asyncpg": sqlalchemy_connection,
        "psycopg-async": psycopg_async,
    }[kind]
    try:
        yield opened
    finally:
        if engine is not None:
            await engine.dispose()


async def app_rows(pool: asyncpg.Pool, schema: str) -> list[str]:
    rows = await pool.fetch(f"SELECT name FROM {quote_identifier(schema)}.app_rows ORDER BY 1")
    return [row["name"] for row in rows]


async def test_a_committed_job_is_stored_and_a_started_scheduler_runs_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    async with stack() as tx:
        await tx.write("order-1")
        job_id = await producer.schedule(
            jobs.record, args=("stacks-commit", "order-1"), connection=tx.conn
        )
        # Not visible outside the transaction before it commits.
        assert await producer.get_job(job_id) is None
    assert await app_rows(pool, migrated) == ["order-1"]
    job = await producer.get_job(job_id)
    assert job is not None and job.args == ("stacks-commit", "order-1")
    jobs.CALLS.pop("stacks-commit", None)
    worker = make_scheduler(tasks=[jobs.record])
    await worker.start()
    await wait_until(lambda: has_status(worker, job_id, JobStatus.SUCCEEDED))
    assert [call["value"] for call in jobs.CALLS["stacks-commit"]] == ["order-1"]


async def test_a_rolled_back_transaction_leaves_neither_the_row_nor_the_job(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    with contextlib.suppress(Rollback):
        async with stack() as tx:
            # The enqueue is the transaction's first statement (SQLAlchemy begins lazily).
            await producer.schedule(jobs.record, args=("x",), connection=tx.conn)
            await tx.write("order-2")
            await producer.schedule_many(
                [JobRequest(jobs.record, args=("y",)), JobRequest(jobs.record, args=("z",))],
                connection=tx.conn,
            )
            raise Rollback
    assert await app_rows(pool, migrated) == []
    assert await count_jobs(pool, migrated) == 0


async def test_a_rolled_back_savepoint_takes_only_its_own_jobs(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    async with stack() as tx:
        await producer.schedule(jobs.record, args=("a",), job_id="before", connection=tx.conn)
        with contextlib.suppress(Rollback):
            async with tx.savepoint():
                await tx.write("inner")
                await producer.schedule(
                    jobs.record, args=("b",), job_id="inside", connection=tx.conn
                )
                raise Rollback
        await producer.schedule_many(
            [JobRequest(jobs.record, args=("c",), job_id="after")], connection=tx.conn
        )
    assert await app_rows(pool, migrated) == []
    assert await producer.get_job("before") is not None
    assert await producer.get_job("inside") is None
    assert await producer.get_job("after") is not None


async def test_bad_input_raises_the_typed_error_writes_nothing_and_the_transaction_goes_on(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    async with stack() as tx:
        await tx.write("kept")
        with pytest.raises(ArgumentsNotSerializableError):
            await producer.schedule(jobs.record, args=(object(),), connection=tx.conn)
        with pytest.raises(InvalidJobError, match="appears twice"):
            await producer.schedule_many(
                [JobRequest(jobs.record, job_id="d"), JobRequest(jobs.record, job_id="d")],
                connection=tx.conn,
            )
        # Refused by the database (the dependency does not exist): only our savepoint is
        # rolled back, the application's transaction is still usable.
        with pytest.raises(UnknownDependencyError):
            await producer.schedule_many(
                [
                    JobRequest(jobs.record, job_id="first"),
                    JobRequest(jobs.record, job_id="second", depends_on=["no-such-job"]),
                ],
                connection=tx.conn,
            )
        await tx.write("still usable")
    assert await app_rows(pool, migrated) == ["kept", "still usable"]
    assert await count_jobs(pool, migrated) == 0


async def test_dependencies_are_recorded_in_the_callers_transaction(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    async with stack() as tx:
        await producer.schedule_many(
            [
                JobRequest(jobs.record, args=("dep", 1), job_id="parent", delay=3600),
                JobRequest(jobs.record, args=("dep", 2), job_id="child", depends_on=["parent"]),
            ],
            connection=tx.conn,
        )
    child = await producer.get_job("child")
    assert child is not None and child.status is JobStatus.BLOCKED


async def test_conflict_policies_behave_as_without_a_connection(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = make_scheduler()
    await producer.schedule(jobs.record, args=("old",), job_id="same", delay=3600)
    await producer.schedule(jobs.record, args=("held",), job_id="holder", unique_key="k")
    async with stack() as tx:
        with pytest.raises(JobAlreadyExistsError) as raised:
            await producer.schedule(jobs.record, args=("new",), job_id="same", connection=tx.conn)
        assert raised.value.job_id == "same"
        with pytest.raises(UniqueKeyConflictError) as held:
            await producer.schedule(jobs.record, unique_key="k", connection=tx.conn)
        assert held.value.job_id == "holder"
        kept = await producer.schedule(
            jobs.record,
            unique_key="k",
            conflict_resolution=ConflictResolution.IGNORE,
            connection=tx.conn,
        )
        assert kept == "holder"
        ignored = await producer.schedule(
            jobs.record,
            args=("ignored",),
            job_id="same",
            conflict_resolution=ConflictResolution.IGNORE,
            connection=tx.conn,
        )
        assert ignored == "same"
        await producer.schedule(
            jobs.record,
            args=("replaced",),
            job_id="same",
            conflict_resolution=ConflictResolution.REPLACE,
            connection=tx.conn,
        )
        await tx.write("after conflicts")
    job = await producer.get_job("same")
    assert job is not None and job.args == ("replaced",)
    assert await app_rows(pool, migrated) == ["after conflicts"]
    assert await count_jobs(pool, migrated) == 2
