"""Transactional enqueue from the connection types applications already hold.

`Scheduler.schedule(..., connection=...)` and `schedule_many()` accept:

- an asyncpg connection (or one borrowed from a pool): written by the store directly;
- a SQLAlchemy `AsyncSession` or `AsyncConnection`: unwrapped to the driver connection of
  its current transaction (begun if none is, as SQLAlchemy's autobegin would), then
  treated as that driver's: asyncpg (``postgresql+asyncpg``) or psycopg
  (``postgresql+psycopg``);
- a psycopg 3 `AsyncConnection`: enqueued through the SQL API's `schedule_jobs()`.

The caller's transaction is never committed or rolled back here: a failing enqueue rolls
back only a savepoint of its own. Optional libraries are recognised without importing
them: an object can only be one of their connections if the library is already imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scheduler.errors import ConfigurationError
from scheduler.models import ConflictResolution
from scheduler.postgres import sql_api_calls
from scheduler.store import JobStore, NewJob

if TYPE_CHECKING:
    from scheduler.postgres.connection import AnyConnection

#: What `connection=` accepts: an asyncpg connection, a SQLAlchemy `AsyncSession` or
#: `AsyncConnection`, or a psycopg 3 `AsyncConnection` (checked at run time).
TransactionConnection: TypeAlias = "AnyConnection | Any"


async def insert_jobs(
    store: JobStore,
    schema: str,
    jobs: Sequence[NewJob],
    conflict: ConflictResolution,
    connection: TransactionConnection | None,
) -> list[str]:
    """Write validated jobs through `connection` (None: the scheduler's own pool)."""
    if connection is None or _is_asyncpg(connection):
        return await store.insert_jobs(jobs, conflict, connection)
    driver = await _sqlalchemy_driver_connection(connection)
    if driver is not None:
        connection = driver
        if _is_asyncpg(connection):
            return await store.insert_jobs(jobs, conflict, connection)
    if _is_module_instance(connection, "psycopg", "AsyncConnection"):
        return await _psycopg_schedule_jobs(connection, schema, jobs, conflict)
    raise ConfigurationError(
        f"connection= got a {type(connection).__module__}.{type(connection).__qualname__};"
        " pass an asyncpg connection, a SQLAlchemy AsyncSession or AsyncConnection (asyncpg"
        " or psycopg driver) or a psycopg 3 AsyncConnection (for a sync psycopg or Django"
        " connection use scheduler.SyncProducer)"
    )


def _is_asyncpg(connection: object) -> bool:
    return isinstance(connection, (asyncpg.Connection, PoolConnectionProxy))


def _is_module_instance(obj: object, module: str, name: str) -> bool:
    """isinstance(obj, module.name), without importing `module` when the app has not."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


async def _sqlalchemy_driver_connection(connection: object) -> Any | None:
    """The driver connection under a SQLAlchemy AsyncSession / AsyncConnection, inside
    its current transaction; None for anything else."""
    if _is_module_instance(connection, "sqlalchemy.ext.asyncio", "AsyncSession"):
        # Autobegins the session's transaction, as its next statement would.
        connection = await connection.connection()  # type: ignore[attr-defined]
    if not _is_module_instance(connection, "sqlalchemy.ext.asyncio", "AsyncConnection"):
        return None
    sa: Any = connection
    if not sa.in_transaction():
        await sa.begin()  # SQLAlchemy's autobegin: the caller commits or rolls it back
    fairy = await sa.get_raw_connection()
    driver = fairy.driver_connection
    if _is_asyncpg(driver) and not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN with the first statement only: send one
        # through it, so the job is written inside that transaction (unless the engine runs
        # in AUTOCOMMIT, where every statement commits on its own anyway).
        await sa.exec_driver_sql("SELECT 1")
    return driver


async def _psycopg_schedule_jobs(
    connection: Any, schema: str, jobs: Sequence[NewJob], conflict: ConflictResolution
) -> list[str]:
    import psycopg

    sql_api_calls.check_supported(jobs, conflict)
    statement = sql_api_calls.schedule_jobs_statement(schema, jobs, conflict)
    dependencies = sql_api_calls.dependency_statements(schema, jobs)
    own_transaction = (
        connection.autocommit
        and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )
    take, release, roll_back = sql_api_calls.savepoint_statements()
    try:
        if own_transaction:  # autocommit: the batch is still all or nothing
            async with connection.transaction(), connection.cursor() as cursor:
                return await _psycopg_run(cursor, statement, dependencies)
        async with connection.cursor() as cursor:
            await cursor.execute(take)  # also begins the implicit transaction, if none
            try:
                ids = await _psycopg_run(cursor, statement, dependencies)
            except BaseException:
                if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    await cursor.execute(roll_back)
                raise
            await cursor.execute(release)
            return ids
    except psycopg.Error as exc:
        typed = sql_api_calls.typed_error(exc, schema, conflict)
        if typed is None:
            raise
        raise typed from None


async def _psycopg_run(
    cursor: Any, statement: sql_api_calls.Statement, dependencies: list[sql_api_calls.Statement]
) -> list[str]:
    await cursor.execute(statement.sql, statement.params)
    row = await cursor.fetchone()
    for dependency in dependencies:
        await cursor.execute(dependency.sql, dependency.params)
    return list(row[0])
