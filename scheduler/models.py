"""The domain vocabulary: statuses, priorities, conflict policies and the read-only job
record. Nothing here does I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict
from uuid import UUID

# AttemptOutcome lives with the outcome classes, which say how each is recorded; this
# module keeps the name it always exported.
from scheduler.outcomes import AttemptOutcome as AttemptOutcome
from scheduler.triggers import Trigger


class JobStatus(str, enum.Enum):
    """Where a job is in its life. The last three are terminal."""

    PENDING = "pending"
    #: Waiting for the jobs it depends on to succeed (`schedule(..., depends_on=...)`).
    BLOCKED = "blocked"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class SchedulerState(str, enum.Enum):
    """The life of a `Scheduler`: new -> starting -> running -> stopping -> stopped, or
    failed when a fatal error stopped it (it then runs no jobs; `Scheduler.failure` says
    why). Health checks should treat anything but RUNNING as not ready."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class JobPriority(enum.IntEnum):
    """Due jobs are claimed highest priority first, then earliest due time first."""

    LOW = 1
    NORMAL = 5
    HIGH = 10
    CRITICAL = 20

    @classmethod
    def coerce(cls, value: object) -> JobPriority:
        """Accept a member or its integer value; anything else is a caller error."""
        if isinstance(value, JobPriority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(f"JobPriority.{p.name} ({p.value})" for p in cls)
        raise ValueError(f"unknown priority {value!r}; use one of {names}")


class ConflictResolution(str, enum.Enum):
    """What `schedule()` does when a custom `job_id` already exists, or when an unfinished
    job already holds the request's `unique_key` (see Flow control, "Unique jobs", in the docs).

    RAISE    raise `JobAlreadyExistsError`, whatever the existing job's state.
    IGNORE   return the existing id and change nothing, whatever its state (so a finished
             job is not run again: "at most once per id").
    REPLACE  overwrite a pending or finished job in place (it becomes pending again with
             fresh retry budgets; its attempt counter keeps counting, so attempt numbers
             never repeat); a running job is not touched and `JobIsRunningError` is raised.
    """

    RAISE = "raise"
    IGNORE = "ignore"
    REPLACE = "replace"


class CoalescePolicy(str, enum.Enum):
    """What a recurring schedule does with slots it fell behind on.

    A schedule *fell behind* when more than one of its fire times is due at once: no
    replica ran its ticker through a whole period (all replicas down, a long stall).

    LATEST  run the latest due slot once; the earlier ones are dropped (the default).
    ALL     run every due slot, at most `MAX_CATCH_UP_SLOTS` (the most recent ones).
    SKIP    run none of them; wait for the next slot in the future.

    A single late slot (the schedule did not fall behind) runs under every policy;
    `misfire_grace_time` bounds how late any slot may start.
    """

    LATEST = "latest"
    ALL = "all"
    SKIP = "skip"


@dataclass(frozen=True)
class JobRequest:
    """One job for `Scheduler.schedule_many()`; the fields mean what `schedule()`'s do."""

    func: Callable[..., Any] | str
    execution_time: datetime | None = None
    delay: float | timedelta | None = None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] | None = None
    job_id: str | None = None
    priority: JobPriority | int = JobPriority.NORMAL
    max_retries: int | None = None
    timeout: float | timedelta | None = field(default=None)
    depends_on: Sequence[str] = ()
    queue: str | None = None
    lock_key: str | None = None
    unique_key: str | None = None


@dataclass(frozen=True)
class Job:
    """A read-only snapshot of one job row, as returned by `Scheduler.get_job()`.

    Times are timezone-aware (UTC). A row written by plain SQL with a time Python's
    datetime cannot hold ('infinity', the year 20000, a date BC) reads as `datetime.max`
    or `datetime.min` in UTC instead of failing; so do `Schedule`'s times.
    """

    job_id: str
    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    status: JobStatus
    priority: JobPriority
    execution_time: datetime
    #: Claims so far; never goes down. Also the fencing token of the latest attempt.
    attempts: int
    #: Failed attempts (exceptions, timeouts), spent against `max_retries`.
    failures: int
    #: Attempts lost with their worker's lease, spent against `orphan_retries`.
    lost_leases: int
    max_retries: int
    timeout: float | None
    last_error: str | None
    lease_owner: UUID | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    #: The recurring schedule that created this job, and the slot it fired for.
    schedule_id: str | None = None
    fire_time: datetime | None = None
    #: Flow control: the queue, the lock key and the unique key (see Flow control in the docs).
    queue: str = "default"
    lock_key: str | None = None
    unique_key: str | None = None

    #: What the job returned (decoded JSON), while it is succeeded; None otherwise (and
    #: when it returned None).
    result: Any = None
    #: The jobs it waits for (`schedule(..., depends_on=...)`), by id.
    depends_on: tuple[str, ...] = ()
    #: The last error apart from its traceback (`last_error` holds the full text): the
    #: exception's type as a traceback names it (None when the error is no exception, e.g.
    #: a timeout or a cancelled dependency) and its message, which lists show.
    error_type: str | None = None
    error_message: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True)
class Attempt:
    """One ended attempt of a job (`Scheduler.get_attempts()`). Times are the database's."""

    attempt: int
    outcome: AttemptOutcome
    worker_id: UUID | None
    hostname: str | None
    #: When the claim committed, and when the attempt was due to start (later only for a
    #: job claimed a moment before its due time).
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime
    error: str | None
    #: The error apart from its traceback, as `Job.error_type` and `Job.error_message`.
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Schedule:
    """A read-only snapshot of one recurring schedule (`Scheduler.get_schedule()`)."""

    schedule_id: str
    task_name: str
    trigger: Trigger
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    priority: JobPriority
    max_retries: int
    timeout: float | None
    coalesce: CoalescePolicy
    misfire_grace_time: float | None
    max_running: int | None
    jitter: float
    paused: bool
    #: None once the trigger is exhausted (it will never fire again).
    next_fire_time: datetime | None
    last_fire_time: datetime | None
    created_at: datetime
    updated_at: datetime
    #: Why the schedule cannot fire (a trigger added by SQL that Python cannot build); it
    #: is then paused. None when all is well.
    error: str | None = None
    #: The queue its jobs go to.
    queue: str = "default"


class ScheduleOptions(TypedDict, total=False):
    """The options of a recurring schedule; `Scheduler.add_schedule()` documents them."""

    schedule_id: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    priority: JobPriority | int
    max_retries: int
    timeout: float | timedelta | None
    coalesce: CoalescePolicy
    misfire_grace_time: float | timedelta | None
    max_running: int | None
    jitter: float | timedelta
    queue: str
