"""The storage port: everything the scheduler's services need from a database, and the
records that cross it. The PostgreSQL adapter in `scheduler.postgres` implements it.

`Lease` (lease.py) and `AttemptEnd` (outcomes.py, with the outcomes that build it) are
defined below this module so those can use them without importing it; they are exported
from here as well."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from scheduler.extensions import QueueDepth
from scheduler.flow import Limits, QueueStats, TaskLimits
from scheduler.lease import Lease as Lease
from scheduler.models import (
    Attempt,
    ConflictResolution,
    Job,
    JobStatus,
    Schedule,
)
from scheduler.outcomes import AttemptEnd as AttemptEnd
from scheduler.recurring import FiringPass, FirstFire, StoredDueSchedule


@dataclass(frozen=True)
class Success(Lease):
    """A successful attempt and what it returned, encoded (None: store no result)."""

    result_json: str | None = None


@dataclass(frozen=True)
class ClaimedJob:
    lease: Lease
    task_name: str
    args_json: str
    kwargs_json: str
    max_retries: int
    timeout: float | None
    failures: int = 0  # failed attempts before this one (for the retry backoff)
    starts_in: float = 0.0  # claimed ahead of its due time: at most this long to wait
    due_epoch: float = 0.0  # the due time, in seconds of the database clock
    queue: str = "default"
    #: Seconds from the due time to the claim (the start), by the database clock.
    start_lag: float = 0.0
    #: The caller's trace context stored at schedule() (JSON text), if any.
    trace_context: str | None = None


@dataclass(frozen=True)
class ClaimResult:
    """What one claim statement did. Facts only: which path to take next, how soon to look
    again and what to log are the caller's choice (`scheduler.services.claiming`)."""

    claimed: list[ClaimedJob]
    #: Job ids of the carried successes that were written (the others were fenced).
    completed: frozenset[str] = frozenset()
    #: Flow control concerns this worker. From the plain claim: work under limits or lock
    #: keys may be waiting for the flow claim. From the flow claim: limits or lock keys
    #: still concern this worker's queues and tasks.
    flow: bool = False
    #: From the flow claim: seconds until a rate limit that held work back has a token.
    retry_in: float | None = None
    #: Out-of-range limit rows whose work the flow claim skipped (as if paused).
    limit_problems: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NewJob:
    """A validated job ready to insert. Exactly one of execution_time / delay is set."""

    job_id: str
    task_name: str
    args_json: str
    kwargs_json: str
    priority: int
    execution_time: datetime | None
    delay_seconds: float | None
    max_retries: int
    timeout: float | None
    #: Jobs that must succeed first (existing ones, or earlier in the same batch).
    depends_on: tuple[str, ...] = ()
    queue: str = "default"
    lock_key: str | None = None
    unique_key: str | None = None
    #: The caller's trace context (JSON text of a string map), stored for the attempt.
    trace_context: str | None = None


@dataclass(frozen=True)
class NewSchedule:
    """A validated recurring schedule ready to store."""

    schedule_id: str
    task_name: str
    args_json: str
    kwargs_json: str
    trigger_json: dict[str, Any]
    priority: int
    max_retries: int
    timeout: float | None
    coalesce: str
    misfire_grace_time: float | None
    max_running: int | None
    jitter: float
    queue: str = "default"


#: Given the database clock, the first fire time of a schedule (None: it never fires).
FirstFireTime = Callable[[datetime], datetime | None]

#: Given a schedule's stored trigger and the database clock, where it fires after a resume
#: (see `scheduler.recurring.resume_fire_time`).
ResumeFireTime = Callable[[str, datetime], datetime | None]

#: Decides what one firing transaction writes for the due schedules it read, given the
#: database clock (see `scheduler.recurring.plan_firing`).
FirePlanner = Callable[[Sequence[StoredDueSchedule], datetime], FiringPass]

#: Plans the first fire times of schedules added by SQL: (id, stored trigger) rows and the
#: database clock (see `scheduler.recurring.plan_first_fires`).
FirstFirePlanner = Callable[[Sequence[tuple[str, str]], datetime], list[FirstFire]]


#: One attempt of one job: (job id, attempt number). Attempt numbers never repeat per job.
AttemptKey = tuple[str, int]


@dataclass(frozen=True)
class HeartbeatResult:
    alive: bool  # False: the lease had expired; this identity must not be used again
    owned: frozenset[AttemptKey]  # the attempts the database says this worker holds
    cancel_requested: frozenset[str]  # job ids


@dataclass(frozen=True)
class UnservedTask:
    """Pending jobs of a task no live worker has registered (in their queue)."""

    task_name: str
    queue: str
    pending: int
    oldest_due: datetime


class ClaimStore(Protocol):
    """The claim part of the storage port: what the claim policy
    (`scheduler.services.claiming.Claims`) drives. One statement per call, no policy."""

    async def claim_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        """One statement: record the `carried` successes (fenced), then claim up to `limit`
        due jobs of `task_names` in `queues` that no flow control applies to (due within
        `lead` seconds). `flow` says that flow control concerns these queues or tasks (a
        limit, or a due job with a lock key): then nothing is claimed here and
        `claim_flow_jobs` takes all of it. A worker whose lease is not live (by the
        database clock) claims nothing."""
        ...

    async def claim_flow_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        """As `claim_jobs`, through the serialised path that claims every due job of
        `task_names` in `queues`, limits, rate limits and lock keys respected."""
        ...

    async def record_successes(self, successes: Sequence[Success]) -> set[str]:
        """Record successes with no claim to carry them (fenced); returns the job ids
        written."""
        ...


class JobStore(ClaimStore, Protocol):
    # -- producers --------------------------------------------------------------------
    async def insert_jobs(
        self, jobs: Sequence[NewJob], conflict: ConflictResolution, connection: Any = None
    ) -> list[str]:
        """Write `jobs` (all or nothing), or raise the conflict `conflict` does not absorb.
        `connection`: the caller's own connection of the adapter's kind (for PostgreSQL an
        asyncpg connection), so the jobs exist only if the caller's transaction commits."""
        ...

    async def cancel_job(self, job_id: str) -> JobStatus | None: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def job_status(self, job_id: str) -> JobStatus | None: ...
    async def task_served(self, task_name: str) -> tuple[bool, int]:
        """Whether a live worker has registered `task_name`; how many workers are live."""
        ...

    async def unserved_tasks(self, limit: int = 50) -> list[UnservedTask]:
        """Pending jobs, per task and queue, that no live worker serves."""
        ...

    async def retry_job(self, job_id: str, at: datetime | None, delay: float | None) -> None:
        """Pending again at `at`, after `delay`, or now, with fresh budgets; raises
        `JobNotFoundError` or `JobNotRetryableError` (not failed or cancelled)."""
        ...

    async def retry_failed_jobs(
        self, task_name: str | None, since: datetime | None, at: datetime | None, batch: int
    ) -> int:
        """Retry every job of `task_name` (None: any) that failed since `since` (and before
        this call), `batch` per transaction; returns how many."""
        ...

    async def get_attempts(self, job_id: str) -> list[Attempt]:
        """The job's ended attempts, oldest first (empty for an unknown job)."""
        ...

    async def await_job(self, job_id: str) -> JobStatus | None:
        """Ask to be notified when the job finishes (`finished_notifications`); returns its
        status now (None: no such job)."""
        ...

    def finished_notifications(
        self, on_finished: Callable[[str], None], on_listening: Callable[[], None]
    ) -> AbstractAsyncContextManager[None]:
        """While entered, `on_finished(job_id)` is called for awaited jobs that finish (for
        a process whose scheduler does not run and so has no listener of its own), and
        `on_listening()` whenever notifications start to be heard (those sent before were
        missed). Entering never waits for a connection; all the waits of a store share
        one, open while any is entered."""
        ...

    # -- recurring schedules ----------------------------------------------------------
    async def insert_schedule(
        self, schedule: NewSchedule, first_fire_time: FirstFireTime, conflict: ConflictResolution
    ) -> bool: ...
    async def get_schedule(self, schedule_id: str) -> Schedule | None: ...
    async def list_schedules(self) -> list[Schedule]: ...
    async def pause_schedule(self, schedule_id: str) -> bool: ...
    async def resume_schedule(self, schedule_id: str, fire_time: ResumeFireTime) -> bool: ...
    async def remove_schedule(self, schedule_id: str) -> bool: ...
    async def fire_due_schedules(self, limit: int, planner: FirePlanner) -> int: ...
    async def plan_new_schedules(self, limit: int, planner: FirstFirePlanner) -> int: ...
    async def next_schedule_delay(self) -> float | None: ...

    # -- dispatcher (the claims: see ClaimStore) ---------------------------------------
    async def next_due_delay(
        self, task_names: Sequence[str], queues: Sequence[str] = ("default",)
    ) -> tuple[float | None, float]:
        """Seconds until the earliest pending job in a queue that is not paused (None:
        none), and the database clock."""
        ...

    # -- one attempt's outcome (fenced: False means the lease was no longer held) -------
    async def end_attempts(self, ends: Sequence[AttemptEnd]) -> dict[str, JobStatus]:
        """End attempts (any outcome, one write): the new status of each job whose attempt
        was still held; an attempt whose lease was lost is left out and changes nothing."""
        ...

    # -- worker leases ----------------------------------------------------------------
    async def register_worker(
        self,
        owner: UUID,
        hostname: str,
        pid: int,
        tasks: Sequence[str],
        lease_time: float,
        queues: Sequence[str] | None = None,
    ) -> None: ...
    async def heartbeat(
        self,
        owner: UUID,
        tasks: Sequence[str],
        lease_time: float,
        queues: Sequence[str] | None = None,
    ) -> HeartbeatResult: ...
    async def unregister_worker(self, owner: UUID) -> None: ...

    async def release_connections(self) -> None:
        """Hand back any connection kept between statements (the scheduler is stopping)."""

    async def reclaim_attempts(
        self, owner: UUID, attempts: Sequence[AttemptKey], orphan_retries: int
    ) -> int:
        """Hand back attempts `owner` holds but does not run (counted as lost leases)."""
        ...

    # -- flow control -----------------------------------------------------------------
    async def pause_queue(self, queue: str) -> None: ...
    async def resume_queue(self, queue: str) -> bool: ...
    async def set_queue_limits(self, queue: str, limits: Limits) -> None: ...
    async def set_task_limits(self, task_name: str, limits: Limits) -> None: ...
    async def set_limit(
        self, scope: str, name: str, kind: str, settings: dict[str, object] | None
    ) -> None:
        """Set one limit of a kind on a queue or a task ('queue'/'task'); None removes it."""
        ...

    async def queue_stats(self) -> list[QueueStats]: ...
    async def task_limits(self) -> list[TaskLimits]: ...
    async def queue_depths(self) -> list[QueueDepth]:
        """Per queue with due pending jobs: how many, and the oldest one's age."""
        ...

    # -- maintenance ------------------------------------------------------------------
    async def take_fleet_pass(self, name: str, every_seconds: float) -> bool:
        """True if no replica ran the pass `name` in the last `every_seconds` (it is now
        this caller's to run)."""
        ...

    async def reap_orphans(self, limit: int, orphan_retries: int) -> int: ...
    async def delete_dead_workers(self) -> int: ...
    async def fail_unrunnable_jobs(self, after_seconds: float, limit: int) -> int: ...
    async def prune_finished_jobs(self, older_than_seconds: float, limit: int) -> int: ...
