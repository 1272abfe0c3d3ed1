"""Enqueueing from synchronous code, inside the caller's transaction: a psycopg 3
`Connection`, a SQLAlchemy `Session` or `Connection` on psycopg 3 (``postgresql+psycopg``),
or Django's database connection.

    producer = SyncProducer(schema="scheduler")
    with transaction.atomic():
        order = Order.objects.create(...)
        producer.schedule(connection, "shop.tasks:send_receipt", args=[order.pk])

A `SyncProducer` validates exactly as `Scheduler.schedule()` does (the same typed errors,
nothing written on bad input), then calls the SQL API's `schedule_jobs()` on the given
connection. It never commits or rolls back the caller's transaction: a refused enqueue
rolls back only a savepoint of its own, so the caller's transaction goes on. Outside a
transaction (autocommit), the enqueue commits on its own, all or nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from scheduler import dependencies, validation
from scheduler.config import default_schema
from scheduler.errors import ConfigurationError, InvalidJobError
from scheduler.models import ConflictResolution, JobPriority, JobRequest
from scheduler.postgres import sql_api_calls
from scheduler.postgres.sql import validate_schema_name
from scheduler.store import NewJob
from scheduler.tasks import TaskCatalog

F = TypeVar("F", bound=Callable[..., Any])


class SyncProducer:
    """Enqueues jobs from sync code through a psycopg 3 `Connection` or Django's
    connection, in the caller's transaction. Workers (a started `Scheduler`) run them.

    Register the tasks whose defaults (`max_retries`, `timeout`, `queue`) the jobs should
    take, as the workers register them; a task can also be named by its string name.
    """

    def __init__(
        self,
        *,
        schema: str | None = None,
        tasks: Sequence[Callable[..., Any]] = (),
        max_payload_bytes: int = 64 * 1024,
    ) -> None:
        self.schema = validate_schema_name(schema if schema is not None else default_schema())
        if (
            not isinstance(max_payload_bytes, int)
            or isinstance(max_payload_bytes, bool)
            or max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be a positive int, got {max_payload_bytes!r}"
            )
        self.max_payload_bytes = max_payload_bytes
        self._tasks = TaskCatalog()
        for func in tasks:
            self.register(func)

    def register(
        self,
        func: F,
        /,
        *,
        name: str | None = None,
        max_retries: int = 0,
        timeout: float | timedelta | None = None,
        queue: str = "default",
    ) -> F:
        """Use `func`'s name and job defaults as the workers declare them."""
        self._tasks.register(func, name=name, max_retries=max_retries, timeout=timeout, queue=queue)
        return func

    def schedule(
        self,
        connection: Any,
        func: Callable[..., Any] | str,
        execution_time: datetime | None = None,
        *,
        delay: float | timedelta | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        priority: JobPriority | int = JobPriority.NORMAL,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        conflict_resolution: ConflictResolution = ConflictResolution.RAISE,
        depends_on: Sequence[str] = (),
        queue: str | None = None,
        lock_key: str | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Enqueue one job, as `Scheduler.schedule()` does; returns its id (or, for a
        unique key IGNORE or REPLACE met, the id of the job holding it)."""
        request = JobRequest(
            func,
            execution_time,
            delay,
            args,
            kwargs,
            job_id,
            priority,
            max_retries,
            timeout,
            depends_on,
            queue,
            lock_key,
            unique_key,
        )
        return self.schedule_many(connection, [request], conflict_resolution=conflict_resolution)[0]

    def schedule_many(
        self,
        connection: Any,
        requests: Iterable[JobRequest],
        *,
        conflict_resolution: ConflictResolution = ConflictResolution.RAISE,
    ) -> list[str]:
        """Enqueue many jobs in one statement, all or nothing, as
        `Scheduler.schedule_many()` does; returns their ids in order."""
        conflict = validation.validate_conflict_resolution(conflict_resolution)
        jobs = [
            validation.new_job(
                request,
                self._tasks.resolve(request.func),
                max_payload_bytes=self.max_payload_bytes,
            )
            for request in requests
        ]
        check_distinct(jobs)
        dependencies.check_batch(jobs, conflict)
        sql_api_calls.check_supported(jobs, conflict)
        if not jobs:
            return []
        run = _runner_for(connection)
        statement = sql_api_calls.schedule_jobs_statement(self.schema, jobs, conflict)
        statements = [statement, *sql_api_calls.dependency_statements(self.schema, jobs)]
        try:
            return run(statements)
        except Exception as exc:
            typed = sql_api_calls.typed_error(exc, self.schema, conflict)
            if typed is None:
                raise
            raise typed from None


def check_distinct(jobs: Sequence[NewJob]) -> None:
    """Ids and unique keys each once per batch (as `Scheduler.schedule_many()` checks)."""
    seen: set[str] = set()
    keys: set[str] = set()
    for job in jobs:
        if job.job_id in seen:
            raise InvalidJobError(f"job_id {job.job_id!r} appears twice in one batch")
        seen.add(job.job_id)
        if job.unique_key is not None:
            if job.unique_key in keys:
                raise InvalidJobError(f"unique_key {job.unique_key!r} appears twice in one batch")
            keys.add(job.unique_key)


Runner = Callable[[list[sql_api_calls.Statement]], list[str]]


def _runner_for(connection: Any) -> Runner:
    """Runs the statements on `connection` atomically; returns the first one's ids."""
    connection = _sqlalchemy_driver_connection(connection)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(connection, psycopg.Connection):
        return lambda statements: _run_psycopg(connection, statements)
    django_db = sys.modules.get("django.db")
    wrapper = sys.modules.get("django.db.backends.base.base")
    if django_db is not None and wrapper is not None:
        # `django.db.connection` is a proxy to the current thread's connection.
        alias = getattr(connection, "alias", None)
        if isinstance(connection, wrapper.BaseDatabaseWrapper) or (
            isinstance(alias, str) and connection is django_db.connection
        ):
            return lambda statements: _run_django(django_db.connections[alias], statements)
    raise ConfigurationError(
        f"SyncProducer got a {type(connection).__module__}.{type(connection).__qualname__};"
        " pass a psycopg 3 Connection, a SQLAlchemy Session or Connection on psycopg 3, or"
        " Django's connection (django.db.connection or django.db.connections[alias]); for"
        " asyncpg, SQLAlchemy async or psycopg async"
        " use Scheduler.schedule(..., connection=...)"
    )


def _sqlalchemy_driver_connection(connection: Any) -> Any:
    """The driver connection under a SQLAlchemy `Session` or `Connection`, inside its
    current transaction (begun if none is, as SQLAlchemy's autobegin would); anything
    else as it is."""
    orm = sys.modules.get("sqlalchemy.orm")
    if orm is not None and isinstance(connection, orm.Session):
        connection = connection.connection()  # autobegins the session's transaction
    engine = sys.modules.get("sqlalchemy.engine")
    if engine is None or not isinstance(connection, engine.Connection):
        return connection
    if not connection.in_transaction():
        connection.begin()  # the caller commits or rolls it back
    return connection.connection.driver_connection


def _run_psycopg(connection: Any, statements: list[sql_api_calls.Statement]) -> list[str]:
    import psycopg

    idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if connection.autocommit and idle:  # no transaction: one of our own, all or nothing
        with connection.transaction(), connection.cursor() as cursor:
            return _execute_all(cursor, statements)
    take, release, roll_back = sql_api_calls.savepoint_statements()
    with connection.cursor() as cursor:
        cursor.execute(take)  # also begins the implicit transaction, if none
        try:
            ids = _execute_all(cursor, statements)
        except BaseException:
            if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                cursor.execute(roll_back)
            raise
        cursor.execute(release)
        return ids


def _run_django(connection: Any, statements: list[sql_api_calls.Statement]) -> list[str]:
    from django.db import transaction

    if connection.vendor != "postgresql":
        raise ConfigurationError(
            f"the scheduler needs PostgreSQL; Django's connection {connection.alias!r} is"
            f" {connection.vendor}"
        )
    # A savepoint inside the caller's atomic() (a transaction of its own in autocommit).
    with transaction.atomic(using=connection.alias), _cursor(connection) as cursor:
        return _execute_all(cursor, statements)


@contextmanager
def _cursor(connection: Any) -> Iterator[Any]:
    cursor = connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _execute_all(cursor: Any, statements: list[sql_api_calls.Statement]) -> list[str]:
    first, *rest = statements
    cursor.execute(first.sql, first.params)
    row = cursor.fetchone()
    for statement in rest:
        cursor.execute(statement.sql, statement.params)
    return list(row[0])
