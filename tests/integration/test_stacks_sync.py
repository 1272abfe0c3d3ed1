"""`SyncProducer`: transactional enqueue from sync code through a psycopg 3 Connection or
Django's connection, against the real libraries and PostgreSQL. Each scenario runs in a
thread of its own (Django refuses database calls from an event loop's thread) and opens
and closes its own connection."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import psycopg
import pytest
import sqlalchemy
import sqlalchemy.orm
import sqlalchemy.pool

from scheduler import (
    ArgumentsNotSerializableError,
    ConflictResolution,
    InvalidJobError,
    JobAlreadyExistsError,
    JobIsRunningError,
    JobRequest,
    JobStatus,
    PayloadTooLargeError,
    SchemaNotReadyError,
    SyncProducer,
    TaskNotNameableError,
    UniqueKeyConflictError,
    UnknownDependencyError,
)
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, count_jobs, has_status, wait_until
from tests.support.django_setup import configure_django


class Rollback(Exception):
    """Raised inside a transaction block to roll it back."""


@dataclass
class Tx:
    conn: Any
    write: Callable[[str], None]
    savepoint: Callable[[], contextlib.AbstractContextManager[Any]]


Stack = Callable[[], contextlib.AbstractContextManager[Tx]]


@pytest.fixture(params=["psycopg", "psycopg-implicit", "sqlalchemy-session", "django"])
async def stack(request: pytest.FixtureRequest, migrated: str) -> Stack:
    table = f"{quote_identifier(migrated)}.app_rows"
    admin = await asyncpg.connect(TEST_DSN)
    await admin.execute(f"CREATE TABLE {table} (name text)")
    await admin.close()
    insert = f"INSERT INTO {table} (name) VALUES (%s)"

    @contextlib.contextmanager
    def psycopg_explicit() -> Iterator[Tx]:
        with psycopg.connect(TEST_DSN, autocommit=True) as conn, conn.transaction():
            yield Tx(conn, lambda name: _execute(conn, insert, name), conn.transaction)

    @contextlib.contextmanager
    def psycopg_implicit() -> Iterator[Tx]:
        # psycopg's default: not autocommit, the first statement begins the transaction,
        # and leaving the block commits (or rolls back on an exception).
        with psycopg.connect(TEST_DSN) as conn:
            yield Tx(conn, lambda name: _execute(conn, insert, name), conn.transaction)

    @contextlib.contextmanager
    def sqlalchemy_session() -> Iterator[Tx]:
        url = TEST_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        statement = sqlalchemy.text(insert.replace("%s", ":name"))
        try:
            with sqlalchemy.orm.Session(engine) as session, session.begin():

                def write(name: str) -> None:
                    session.execute(statement, {"name": name})

                yield Tx(session, write, session.begin_nested)
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def django_atomic() -> Iterator[Tx]:
        configure_django()
        from django.db import connection, connections, transaction

        try:
            with transaction.atomic():

                def write(name: str) -> None:
                    with connection.cursor() as cursor:
                        cursor.execute(insert, [name])

                yield Tx(connection, write, transaction.atomic)
        finally:
            connections.close_all()

    return {
        "psycopg": psycopg_explicit,
        "psycopg-implicit": psycopg_implicit,
        "sqlalchemy-session": sqlalchemy_session,
        "django": django_atomic,
    }[request.param]


def _execute(conn: Any, sql: str, *params: Any) -> None:
    conn.execute(sql, params)


async def in_thread(work: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(work)


async def app_rows(pool: asyncpg.Pool, schema: str) -> list[str]:
    rows = await pool.fetch(f"SELECT name FROM {quote_identifier(schema)}.app_rows ORDER BY 1")
    return [row["name"] for row in rows]


async def test_a_committed_job_is_stored_and_a_started_scheduler_runs_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = SyncProducer(schema=migrated)

    def enqueue() -> str:
        with stack() as tx:
            tx.write("order-1")
            return producer.schedule(tx.conn, jobs.record_sync, args=("sync-commit", "order-1"))

    job_id = await in_thread(enqueue)
    assert await app_rows(pool, migrated) == ["order-1"]
    jobs.CALLS.pop("sync-commit", None)
    worker = make_scheduler(tasks=[jobs.record_sync])
    await worker.start()
    await wait_until(lambda: has_status(worker, job_id, JobStatus.SUCCEEDED))
    assert [call["value"] for call in jobs.CALLS["sync-commit"]] == ["order-1"]


async def test_a_rolled_back_transaction_leaves_neither_the_row_nor_the_job(
    pool: asyncpg.Pool, migrated: str, stack: Stack
) -> None:
    producer = SyncProducer(schema=migrated)

    def enqueue_then_roll_back() -> None:
        with contextlib.suppress(Rollback), stack() as tx:
            producer.schedule(tx.conn, jobs.record, args=("first statement",))
            tx.write("order-2")
            producer.schedule_many(
                tx.conn, [JobRequest(jobs.record, args=("y",)), JobRequest("other:task")]
            )
            raise Rollback

    await in_thread(enqueue_then_roll_back)
    assert await app_rows(pool, migrated) == []
    assert await count_jobs(pool, migrated) == 0


async def test_a_rolled_back_savepoint_takes_only_its_own_jobs(
    pool: asyncpg.Pool, migrated: str, stack: Stack
) -> None:
    producer = SyncProducer(schema=migrated)

    def enqueue() -> None:
        with stack() as tx:
            producer.schedule(tx.conn, jobs.record, job_id="before")
            with contextlib.suppress(Rollback), tx.savepoint():
                tx.write("inner")
                producer.schedule(tx.conn, jobs.record, job_id="inside")
                raise Rollback
            producer.schedule(tx.conn, jobs.record, job_id="after")

    await in_thread(enqueue)
    ids = {row["job_id"] for row in await pool.fetch(f'SELECT job_id FROM "{migrated}".jobs')}
    assert ids == {"before", "after"}
    assert await app_rows(pool, migrated) == []


async def test_bad_input_raises_the_typed_error_writes_nothing_and_the_transaction_goes_on(
    pool: asyncpg.Pool, migrated: str, stack: Stack
) -> None:
    producer = SyncProducer(schema=migrated)

    def enqueue() -> None:
        with stack() as tx:
            tx.write("kept")
            with pytest.raises(ArgumentsNotSerializableError):
                producer.schedule(tx.conn, jobs.record, args=(object(),))
            with pytest.raises(TaskNotNameableError):
                producer.schedule(tx.conn, lambda: None)
            with pytest.raises(InvalidJobError, match="unknown priority"):
                producer.schedule(tx.conn, jobs.record, priority=7)
            with pytest.raises(InvalidJobError, match="appears twice"):
                producer.schedule_many(
                    tx.conn, [JobRequest(jobs.record, job_id="d"), JobRequest("x", job_id="d")]
                )
            # Refused by the database: only the enqueue's own savepoint rolls back.
            with pytest.raises(UnknownDependencyError):
                producer.schedule_many(
                    tx.conn,
                    [
                        JobRequest(jobs.record, job_id="first"),
                        JobRequest(jobs.record, job_id="second", depends_on=["missing"]),
                    ],
                )
            tx.write("still usable")

    await in_thread(enqueue)
    assert await app_rows(pool, migrated) == ["kept", "still usable"]
    assert await count_jobs(pool, migrated) == 0


async def test_conflict_policies_and_task_defaults(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    producer = SyncProducer(schema=migrated)
    producer.register(jobs.fail_first, max_retries=4, queue="mail", timeout=9)
    scheduler = make_scheduler()
    await scheduler.schedule(jobs.record, args=("old",), job_id="same", delay=3600)
    await scheduler.schedule(jobs.record, job_id="holder", unique_key="k", delay=3600)

    def enqueue() -> None:
        with stack() as tx:
            with pytest.raises(JobAlreadyExistsError) as raised:
                producer.schedule(tx.conn, jobs.record, args=("new",), job_id="same")
            assert raised.value.job_id == "same"
            with pytest.raises(UniqueKeyConflictError) as held:
                producer.schedule(tx.conn, jobs.record, unique_key="k")
            assert held.value.job_id == "holder"
            ignore = ConflictResolution.IGNORE
            assert (
                producer.schedule(tx.conn, jobs.record, unique_key="k", conflict_resolution=ignore)
                == "holder"
            )
            assert (
                producer.schedule(tx.conn, jobs.record, job_id="same", conflict_resolution=ignore)
                == "same"
            )
            producer.schedule(
                tx.conn,
                jobs.record,
                args=("replaced",),
                job_id="same",
                conflict_resolution=ConflictResolution.REPLACE,
            )
            producer.schedule(tx.conn, jobs.fail_first, args=("k", 1), job_id="defaults")
            tx.write("after conflicts")

    await in_thread(enqueue)
    same = await scheduler.get_job("same")
    assert same is not None and same.args == ("replaced",)
    defaults = await scheduler.get_job("defaults")
    assert defaults is not None
    assert (defaults.task_name, defaults.max_retries, defaults.queue, defaults.timeout) == (
        "tests.support.jobs:fail_first",
        4,
        "mail",
        9.0,
    )
    assert await app_rows(pool, migrated) == ["after conflicts"]


async def test_replace_of_a_running_job_is_refused_typed(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    worker = make_scheduler(tasks=[jobs.wait_forever])
    await worker.start()
    await worker.schedule(jobs.wait_forever, args=("busy",), job_id="busy")
    await wait_until(lambda: has_status(worker, "busy", JobStatus.RUNNING))
    producer = SyncProducer(schema=migrated)

    def enqueue() -> None:
        with stack() as tx:
            with pytest.raises(JobIsRunningError) as raised:
                producer.schedule(
                    tx.conn,
                    jobs.wait_forever,
                    args=("busy",),
                    job_id="busy",
                    conflict_resolution=ConflictResolution.REPLACE,
                )
            assert raised.value.job_id == "busy"
            tx.write("goes on")

    await in_thread(enqueue)
    assert await app_rows(pool, migrated) == ["goes on"]


async def test_an_unmigrated_schema_says_to_migrate(schema: str) -> None:
    def enqueue() -> None:
        with psycopg.connect(TEST_DSN) as conn:
            SyncProducer(schema=schema).schedule(conn, "some:task")

    with pytest.raises(SchemaNotReadyError, match="migrate"):
        await in_thread(enqueue)


async def test_the_owners_payload_cap_is_a_ceiling_no_session_can_lift(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stack: Stack
) -> None:
    """Since 0011 the SQL API's cap is settings.max_payload_bytes, which only the owner
    writes: a producer allowing more than it is refused, typed, with how to raise it; a
    session's SET changes nothing; once the owner raises it, the producer's own cap rules."""
    big = ["x" * 100_000]  # over the database's default cap of 64 KiB, under the producer's
    producer = SyncProducer(schema=migrated, max_payload_bytes=200_000)

    def enqueue() -> str:
        with stack() as tx:
            _cursor(tx.conn).execute(
                "SELECT set_config('scheduler.max_payload_bytes', '2147483647', true)"
            )
            return producer.schedule(tx.conn, jobs.record, args=big)

    with pytest.raises(PayloadTooLargeError, match=r"settings SET max_payload_bytes"):
        await in_thread(enqueue)
    await pool.execute(
        f"UPDATE {quote_identifier(migrated)}.settings SET max_payload_bytes = 262144"
    )
    job_id = await in_thread(enqueue)
    job = await make_scheduler().get_job(job_id)
    assert job is not None and job.args == tuple(big)

    def over_the_producers_cap() -> None:
        with stack() as tx:
            producer.schedule(tx.conn, jobs.record, args=["x" * 300_000])

    with pytest.raises(PayloadTooLargeError):
        await in_thread(over_the_producers_cap)


def _cursor(conn: Any) -> Any:
    if isinstance(conn, sqlalchemy.orm.Session):
        return conn.connection().connection.cursor()
    return conn.cursor()
