"""Operator commands behind `scheduler jobs / retry / retry-failed / purge / stats`: list
and filter jobs, retry one or every failed one, purge finished ones in batches, read the
monitoring views. Each takes a pool and a schema; times given as durations are measured on
the database clock. No command waits for ever for a connection of the pool."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from scheduler.errors import SchedulerError
from scheduler.manual_retries import RETRY_BATCH_SIZE
from scheduler.models import JobStatus
from scheduler.postgres.connection import BoundedPool
from scheduler.postgres.sql import Queries
from scheduler.postgres.store import PostgresJobStore
from scheduler.store import UnservedTask

FINISHED = ("succeeded", "failed", "cancelled")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_SECONDS = 100 * 366 * 86400.0
#: How a duration is written, for error messages.
DURATION_FORMS = "a duration such as 30s, 15m, 2h, 7d, 1w or plain seconds (90, 0.5)"


class OperationError(SchedulerError):
    """An operator command cannot do what was asked; the message says why."""


@dataclass(frozen=True)
class PointInTime:
    """A time given on the command line: an instant, or a duration before the database's
    now (so the operator's clock never matters)."""

    at: datetime | None = None
    seconds_ago: float | None = None


def parse_duration(text: str) -> float:
    """Seconds in '30s', '15m', '2h', '7d', '1w' or plain '90' / '0.5': the one duration
    syntax of every command-line option that takes one. Never negative."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise OperationError(f"{text!r} is not a duration: give {DURATION_FORMS}")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > MAX_DURATION_SECONDS:
        raise OperationError(f"{text!r} is longer than 100 years: give a shorter duration")
    return seconds


def parse_point_in_time(text: str) -> PointInTime:
    """'2026-11-29T12:00:00+00:00' (a time zone is required), or a duration ago ('30m',
    '2h', '7d', plain seconds)."""
    if _DURATION.match(text.strip().lower()):
        return PointInTime(seconds_ago=parse_duration(text))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise OperationError(
            f"{text!r} is not a time: give an ISO 8601 time with a zone"
            f" (2026-11-29T12:00:00+00:00) or {DURATION_FORMS}, meaning that long ago"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise OperationError(
            f"{text!r} has no time zone; add one (e.g. +00:00) so it names one instant"
        )
    return PointInTime(at=at)


def validate_statuses(statuses: Sequence[str], allowed: Sequence[str]) -> list[str]:
    for status in statuses:
        if status not in allowed:
            raise OperationError(f"unknown status {status!r}; use one of {', '.join(allowed)}")
    return list(statuses)


async def list_jobs(
    pool: asyncpg.Pool[Any],
    schema: str,
    *,
    statuses: Sequence[str] = (),
    tasks: Sequence[str] = (),
    since: PointInTime | None = None,
    until: PointInTime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Jobs newest change first, filtered by status, task and a window on the last change."""
    if limit < 1:
        raise OperationError(f"--limit must be >= 1, got {limit}")
    allowed = [s.value for s in JobStatus]
    since, until = since or PointInTime(), until or PointInTime()
    rows = await BoundedPool(pool).fetch(
        Queries(schema).list_jobs,
        validate_statuses(statuses, allowed) or None,
        list(tasks) or None,
        since.at,
        since.seconds_ago,
        until.at,
        until.seconds_ago,
        limit,
    )
    return [dict(row) for row in rows]


async def retry_job(pool: asyncpg.Pool[Any], schema: str, job_id: str, delay: float) -> None:
    """Put a failed or cancelled job back to pending (fresh budgets) after `delay` seconds."""
    if delay < 0:
        raise OperationError(f"--delay must be >= 0 seconds, got {delay}")
    await PostgresJobStore(pool, schema).retry_job(job_id, None, delay)


async def retry_failed_jobs(
    pool: asyncpg.Pool[Any],
    schema: str,
    task_name: str | None,
    since: PointInTime | None,
    delay: float,
) -> int:
    """Retry every job (of a task) that failed since a time, in batches; returns how many."""
    if delay < 0:
        raise OperationError(f"--delay must be >= 0 seconds, got {delay}")
    now: datetime = await BoundedPool(pool).fetchval(Queries(schema).database_now)
    since_at = None
    if since is not None:
        since_at = since.at or now - timedelta(seconds=since.seconds_ago or 0)
    store = PostgresJobStore(pool, schema)
    at = now + timedelta(seconds=delay) if delay else None
    return await store.retry_failed_jobs(task_name, since_at, at, RETRY_BATCH_SIZE)


async def purge_jobs(
    pool: asyncpg.Pool[Any],
    schema: str,
    before: PointInTime,
    *,
    statuses: Sequence[str] = FINISHED,
    batch_size: int = 1000,
) -> int:
    """Delete finished jobs that finished before `before`, one batch per transaction so a
    big purge never holds many row locks; returns how many were deleted."""
    if batch_size < 1:
        raise OperationError(f"--batch-size must be >= 1, got {batch_size}")
    wanted = validate_statuses(statuses, FINISHED)
    query = Queries(schema).purge_jobs_finished_before
    total = 0
    while True:
        deleted: int = await BoundedPool(pool).fetchval(
            query, before.at, wanted, batch_size, before.seconds_ago
        )
        total += deleted
        if deleted < batch_size:
            return total


async def unserved_tasks(pool: asyncpg.Pool[Any], schema: str) -> list[UnservedTask]:
    """Pending jobs, per task and queue, whose task no live worker has registered."""
    return await PostgresJobStore(pool, schema).unserved_tasks()


async def stats(pool: asyncpg.Pool[Any], schema: str) -> dict[str, Any]:
    """The per-task view and fleet counters, as plain data."""
    q = Queries(schema)
    tasks = [dict(row) for row in await BoundedPool(pool).fetch(q.task_stats)]
    fleet = await BoundedPool(pool).fetchrow(q.fleet_stats)
    assert fleet is not None
    return {"tasks": tasks, **dict(fleet)}
