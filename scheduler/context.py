"""`current_job()`: which job and attempt the running code belongs to, e.g. to make a side
effect idempotent per attempt or to log with the job id, and whether the attempt has been
asked to stop (what a synchronous job checks, since a thread cannot be interrupted)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NoReturn
from uuid import UUID

from scheduler.errors import InvalidJobError, JobInterruptedError, SchedulerError
from scheduler.validation import validate_seconds


class Snooze(Exception):
    """Raise it from a running job to run the job again after `delay` (seconds or a
    timedelta) without counting a failure: the attempt ends `snoozed`, the job is pending
    again, its `failures` and `lost_leases` stay as they are. A job may snooze any number
    of times. A cancel requested meanwhile wins (the job ends cancelled)."""

    def __init__(self, delay: float | timedelta = 0.0) -> None:
        checked = validate_seconds(delay, "Snooze delay", InvalidJobError, allow_zero=True)
        self.delay = checked if checked is not None else 0.0
        super().__init__(f"snooze for {self.delay} seconds")


class StopSignal:
    """Set from the event loop, read from the job (possibly in another thread): a plain
    attribute, whose assignment is atomic."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


@dataclass(frozen=True)
class JobContext:
    job_id: str
    task_name: str
    #: 1 for the first run; every later claim counts up, and a number never repeats.
    attempt: int
    worker_id: UUID
    _stop: StopSignal = field(default_factory=StopSignal, repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """True once the attempt should stop: `cancel_job()`, its timeout, a shutdown past
        the grace period, or a lost lease. Async jobs are also cancelled at their next
        `await`; synchronous jobs run in threads and must check this (or call
        `raise_if_cancelled()`) to stop early."""
        return self._stop.reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop.reason

    def snooze(self, delay: float | timedelta = 0.0) -> NoReturn:
        """End this attempt now and run the job again after `delay` (raises `Snooze`; let
        it propagate)."""
        raise Snooze(delay)

    def raise_if_cancelled(self) -> None:
        """Raise `JobInterruptedError` if the attempt was asked to stop. The attempt is then
        recorded for what stopped it (cancelled, timed out, released), not as a failure of
        your code."""
        if self._stop.reason is not None:
            raise JobInterruptedError(
                f"job {self.job_id} attempt {self.attempt}: {self._stop.reason}"
            )


_current: ContextVar[JobContext | None] = ContextVar("scheduler_current_job", default=None)


def current_job() -> JobContext:
    """The job being run by this task (also inside sync tasks' threads)."""
    context = _current.get()
    if context is None:
        raise SchedulerError("current_job() is only available inside a running job")
    return context


def set_current_job(context: JobContext) -> None:
    _current.set(context)
