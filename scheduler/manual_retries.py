"""Running failed (or cancelled) jobs again: one by id, or every failed job of a task since
a time. Budgets start afresh; the attempt counter keeps counting (see `retry_job` in the
SQL API, which both use)."""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduler.errors import InvalidJobError
from scheduler.store import JobStore
from scheduler.validation import validate_delay, validate_execution_time

#: Jobs retried per transaction by the bulk form.
RETRY_BATCH_SIZE = 1000


async def retry_job(
    store: JobStore,
    job_id: str,
    at: datetime | None,
    delay: float | timedelta | None,
) -> None:
    run_at = validate_execution_time(at, delay)
    await store.retry_job(job_id, run_at, validate_delay(delay))


async def retry_failed_jobs(
    store: JobStore,
    task_name: str | None,
    since: datetime | None,
    at: datetime | None,
) -> int:
    if since is not None and (
        not isinstance(since, datetime) or since.tzinfo is None or since.utcoffset() is None
    ):
        raise InvalidJobError(
            f"since must be a timezone-aware datetime, got {since!r}; e.g."
            " datetime.now(timezone.utc) - timedelta(hours=1)"
        )
    run_at = validate_execution_time(at, None)
    return await store.retry_failed_jobs(task_name, since, run_at, RETRY_BATCH_SIZE)
