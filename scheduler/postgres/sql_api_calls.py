"""Enqueueing through the SQL API (`schedule_jobs()`, `add_dependencies()`) from drivers
other than asyncpg: psycopg 3 (sync and async) and Django's connection.

Python validates first (the same typed errors as `Scheduler.schedule()`); the SQL function
then checks again and applies the conflict policy, so every language enqueues through one
implementation. The statement uses `%s` placeholders, the paramstyle psycopg and Django
share, with every parameter cast to its type. Driver errors are mapped back to the typed
errors by SQLSTATE, whichever driver (or Django's wrapper of it) raised them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.dependencies import dependency_order
from scheduler.errors import (
    InvalidJobError,
    JobAlreadyExistsError,
    JobIsRunningError,
    PayloadTooLargeError,
    SchedulerError,
    SchemaNotReadyError,
    UniqueKeyConflictError,
    UnknownDependencyError,
)
from scheduler.models import ConflictResolution
from scheduler.postgres.sql import quote_identifier, validate_schema_name
from scheduler.store import NewJob

#: A savepoint name of ours, so the caller's own savepoints are never touched.
SAVEPOINT = "scheduler_enqueue"


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...]


def check_supported(jobs: Sequence[NewJob], conflict: ConflictResolution) -> None:
    """What the SQL API cannot do the way `schedule()` does, refused before writing."""
    if conflict is not ConflictResolution.RAISE and any(job.depends_on for job in jobs):
        raise InvalidJobError(
            "depends_on through a psycopg or Django connection needs"
            " conflict_resolution=ConflictResolution.RAISE (the SQL API does not say which"
            " jobs IGNORE kept); enqueue the dependent jobs with RAISE, or through asyncpg"
        )


def schedule_jobs_statement(
    schema: str, jobs: Sequence[NewJob], conflict: ConflictResolution
) -> Statement:
    """One call of `schedule_jobs()` for the whole batch: the columns as typed arrays."""
    s = quote_identifier(validate_schema_name(schema))
    # Python has checked the payload against the producer's own cap; the SQL function then
    # checks the database's, settings.max_payload_bytes, which only the schema owner sets (a
    # session cannot lift it): a payload over it is refused with PayloadTooLargeError.
    sql = (
        f"SELECT {s}.schedule_jobs(ARRAY("
        f"SELECT {s}.job_request(t, a::jsonb, k::jsonb, r, d * interval '1 second', i, p, m,"
        " o * interval '1 second', q, l, u)"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
        " %s::text[], %s::int4[], %s::int4[], %s::float8[], %s::text[], %s::text[],"
        " %s::text[]) WITH ORDINALITY AS x(t, a, k, r, d, i, p, m, o, q, l, u, n)"
        f" ORDER BY n)::{s}.job_request[], %s::text)"
    )
    columns: tuple[list[Any], ...] = tuple([] for _ in range(12))
    for job in jobs:
        row = (
            job.task_name,
            job.args_json,
            job.kwargs_json,
            job.execution_time,
            job.delay_seconds,
            job.job_id,
            int(job.priority),
            job.max_retries,
            job.timeout,
            job.queue,
            job.lock_key,
            job.unique_key,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return Statement(sql, (*columns, conflict.value))


def dependency_statements(schema: str, jobs: Sequence[NewJob]) -> list[Statement]:
    """Record the batch's dependencies, dependencies first (after a RAISE insert, every job
    of the batch is fresh)."""
    s = quote_identifier(validate_schema_name(schema))
    return [
        Statement(f"SELECT {s}.add_dependencies(%s::text, %s::text[])", (job.job_id, list(ids)))
        for job in dependency_order(jobs)
        if (ids := job.depends_on)
    ]


def savepoint_statements() -> tuple[str, str, str]:
    """(take, release, roll back): our own savepoint inside the caller's transaction."""
    return (
        f"SAVEPOINT {SAVEPOINT}",
        f"RELEASE SAVEPOINT {SAVEPOINT}",
        f"ROLLBACK TO SAVEPOINT {SAVEPOINT}",
    )


def typed_error(
    exc: BaseException, schema: str, conflict: ConflictResolution
) -> SchedulerError | None:
    """The typed error a driver error stands for, or None when it is none of ours."""
    driver = _driver_error(exc)
    if driver is None:
        return None
    sqlstate = getattr(driver, "sqlstate", None) or getattr(driver, "pgcode", None)
    diag = getattr(driver, "diag", None)
    message = str(getattr(diag, "message_primary", None) or driver).strip()
    constraint = getattr(diag, "constraint_name", None)
    if sqlstate == "23505":
        if constraint == "jobs_unique_key_idx":
            holder, key = _quoted(message, 0), _quoted(message, 1)
            return UniqueKeyConflictError(
                f"job {holder!r} already holds unique_key {key!r} (it is pending, blocked or"
                " running); pass conflict_resolution=ConflictResolution.IGNORE to keep it or"
                " REPLACE to overwrite it while it is pending",
                holder,
            )
        job_id = _quoted(message, 0)
        if constraint == "jobs_pkey" and conflict is ConflictResolution.REPLACE:
            return JobAlreadyExistsError(
                f"a job with id {job_id!r} already exists and does not hold the unique_key"
                " it was scheduled with; REPLACE with a unique key replaces the job holding"
                " the key, so schedule it under another job_id (or none)",
                job_id,
            )
        return JobAlreadyExistsError(
            f"a job with id {job_id!r} already exists; pass"
            " conflict_resolution=ConflictResolution.IGNORE to keep it or REPLACE to"
            " overwrite it",
            job_id,
        )
    if sqlstate == "55006":
        job_id = _quoted(message, 0)
        return JobIsRunningError(
            f"job {job_id!r} is running, so nothing was replaced; cancel it first"
            " (cancel_job) or schedule under another id",
            job_id,
        )
    if sqlstate == "P0002":
        return UnknownDependencyError(message)
    if sqlstate == "54000":
        return PayloadTooLargeError(
            f"{message} [the database's cap: the schema owner may raise it with UPDATE"
            f" {quote_identifier(schema)}.settings SET max_payload_bytes = N (up to 67108864)]"
        )
    if sqlstate in ("22023", "55000"):
        return InvalidJobError(message)
    if sqlstate in ("42P01", "3F000", "42883", "42704"):
        return SchemaNotReadyError(
            f"the scheduler tables or functions in schema {schema!r} do not exist (or are"
            " older than this version): start a Scheduler on it (it migrates by default) or"
            " run `scheduler migrate`"
        )
    return None


def _driver_error(exc: BaseException) -> BaseException | None:
    """The DB-API error itself: Django wraps the driver's as its own, with it as cause."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None):
            return seen
        seen = seen.__cause__
    return None


_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def _quoted(message: str, index: int) -> str:
    """The `index`-th quoted literal of a SQL API message (they quote with %L)."""
    found = _QUOTED.findall(message)
    return found[index].replace("''", "'") if len(found) > index else ""
