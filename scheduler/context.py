"""`current_job()`: which job and attempt the running code belongs to, e.g. to make a side
effect idempotent per attempt or to log with the job id."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from scheduler.errors import SchedulerError


@dataclass(frozen=True)
class JobContext:
    job_id: str
    task_name: str
    attempt: int  # 1 for the first run; retries and re-runs after a crash count up
    worker_id: UUID


_current: ContextVar[JobContext | None] = ContextVar("scheduler_current_job", default=None)


def current_job() -> JobContext:
    """The job being run by this task (also inside sync tasks' threads)."""
    context = _current.get()
    if context is None:
        raise SchedulerError("current_job() is only available inside a running job")
    return context


def set_current_job(context: JobContext) -> None:
    _current.set(context)
