"""Event callbacks: what happened to jobs and schedules, told to the code that asked.

A handler is a plain function taking a `JobEvent`. It is called in the event loop, right
after the fact is recorded (an attempt's outcome once its write landed, a job once its
insert committed), so it must not block: hand slow work (an HTTP call) to a task or a
queue of your own. A handler that raises is logged and skipped; the next handlers still
run, and nothing the scheduler does depends on them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

logger = logging.getLogger("scheduler.events")


class EventKind(enum.Enum):
    #: `schedule()`/`schedule_many()` committed a job (in the process that called it).
    SCHEDULED = "scheduled"
    #: A pending job was cancelled by `cancel_job()` (in the process that called it), or a
    #: running attempt ended cancelled on request (on the replica that ran it).
    CANCELLED = "cancelled"
    #: The job's code is about to run (after its middleware started, before the task).
    STARTED = "started"
    SUCCEEDED = "succeeded"
    #: The attempt failed and the job will run again (its retries were not spent).
    RETRIED = "retried"
    #: The attempt failed and it was the job's last: the job is failed.
    FAILED = "failed"
    #: The attempt asked to run again later (`Snooze`).
    SNOOZED = "snoozed"
    #: Shutdown interrupted the attempt and gave the job back for a peer.
    RELEASED = "released"
    #: This replica lost the attempt's lease: its outcome was not (or could not be) written.
    LEASE_LOST = "lease lost"
    #: A recurring schedule's slot turned into a job (on the replica that fired it).
    SCHEDULE_FIRED = "schedule fired"


#: The kinds that say something other than how an attempt ended. CANCELLED is not among
#: them: it also ends an attempt (a running job cancelled on request).
NOT_ATTEMPT_ENDINGS = frozenset({EventKind.SCHEDULED, EventKind.STARTED, EventKind.SCHEDULE_FIRED})

#: The kinds that end an attempt on the replica that ran it: exactly one per attempt run.
#: Every kind but those above: each is what some outcome reports (`report()` in
#: scheduler/outcomes.py), so a kind added for a new outcome needs no listing here.
ATTEMPT_ENDINGS = frozenset(EventKind) - NOT_ATTEMPT_ENDINGS


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job_id: str
    task_name: str | None = None
    queue: str | None = None
    #: The attempt number (None for events outside an attempt: scheduled, fired, a
    #: pending job cancelled).
    attempt: int | None = None
    worker_id: UUID | None = None
    #: The error text of a failed attempt (a traceback for an exception).
    error: str | None = None
    #: Seconds the job's code ran (monotonic clock), for attempt endings that ran it.
    run_time: float | None = None
    #: Seconds from the job's due time to its start, by the database clock (STARTED and
    #: the attempt endings).
    start_lag: float | None = None
    #: For SCHEDULE_FIRED: the schedule and the slot.
    schedule_id: str | None = None
    fire_time: datetime | None = None
    #: A failed attempt's error apart from its traceback: the exception's type (None when
    #: it is no exception, e.g. a timeout) and its message. What an alert should show.
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ends_attempt(self) -> bool:
        return self.kind in ATTEMPT_ENDINGS


EventHandler = Callable[[JobEvent], None]


class EventBus:
    """Calls every handler in order; one that raises is logged, never propagated."""

    def __init__(self, handlers: Sequence[EventHandler]) -> None:
        self._handlers = tuple(handlers)

    def __bool__(self) -> bool:
        return bool(self._handlers)

    def emit(self, event: JobEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                logger.exception(
                    "event handler %r failed on %s of job %s; ignored",
                    handler,
                    event.kind.value,
                    event.job_id,
                )
