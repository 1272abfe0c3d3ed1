"""The composition root: `Scheduler` wires the store, the services and the runner together
and owns their lifecycle. Everything else in the package is unaware of the others."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import anyio
import asyncpg
from typing_extensions import Self, Unpack

from scheduler import connections, dependencies, manual_retries, poll_only, validation, waiting
from scheduler.config import SchedulerConfig, seconds
from scheduler.connections import TransactionConnection
from scheduler.errors import (
    ConfigurationError,
    InvalidJobError,
    InvalidScheduleError,
    SchedulerAlreadyRunningError,
    SchedulerNotRunningError,
    SchedulerStoppedError,
)
from scheduler.events import EventHandler
from scheduler.executors import http
from scheduler.extensions import Extension
from scheduler.flow import QueueStats, TaskLimits, validate_limits
from scheduler.health import Health
from scheduler.limits import Limit, StoredLimit, limit_scope
from scheduler.middleware import Middleware
from scheduler.models import (
    Attempt,
    ConflictResolution,
    Job,
    JobPriority,
    JobRequest,
    JobStatus,
    Schedule,
    ScheduleOptions,
    SchedulerState,
)
from scheduler.observing import observability
from scheduler.postgres import migrate as migrations
from scheduler.postgres import pooling
from scheduler.postgres.connection import borrowed
from scheduler.postgres.owned_pool import pool_for
from scheduler.postgres.store import PostgresJobStore
from scheduler.recurring import first_fire_time, resume_fire_time
from scheduler.retry_backoff import RetryBackoff
from scheduler.running_jobs import WorkerIdentity
from scheduler.runtime import UNREGISTER_BOUND, Runtime
from scheduler.store import JobStore, NewJob, NewSchedule
from scheduler.tasks import (
    TaskCatalog,
)
from scheduler.triggers import CronTrigger, IntervalTrigger, Trigger
from scheduler.unserved import UnservedTaskCheck
from scheduler.waiting import FinishedJobs

logger = logging.getLogger("scheduler")

F = TypeVar("F", bound=Callable[..., Any])


class Scheduler:
    """One per replica. Schedules jobs from anywhere; runs them once started.

    ``schedule()``, ``cancel_job()`` and ``get_job()`` work without ``start()`` (a
    producer-only process); running jobs needs ``start()`` or ``async with``.

    ``db_pool`` is an asyncpg pool the application owns, or a DSN string (a URL or libpq
    keywords): the scheduler then opens a pool of its own (at most 10 connections, see
    `scheduler.postgres.owned_pool`) and closes it in ``shutdown()``.

    ``store`` (for tests and embedding) replaces the PostgreSQL store the scheduler
    otherwise builds on ``db_pool``: everything it reads and writes then goes through
    that `scheduler.store.JobStore` (an in-memory or a fault-injecting one, say). With a
    store, ``db_pool`` may be None: ``migrate()`` then refuses, ``start()`` leaves the
    schema to the store, and the services poll instead of listening for notifications.

    ``listen=False`` starts no LISTEN connection: the replica polls every
    ``poll_interval`` (1 s unless given) and runs on a pool of one connection (see
    `scheduler.poll_only`).
    """

    def __init__(
        self,
        db_pool: asyncpg.Pool | str | None,
        max_concurrent_jobs: int = 10,
        *,
        store: JobStore | None = None,
        schema: str | None = None,
        auto_migrate: bool = True,
        lease_time: float | timedelta = 30.0,
        heartbeat_interval: float | timedelta = 10.0,
        poll_interval: float | timedelta | None = None,
        shutdown_grace: float | timedelta = 30.0,
        claim_batch_size: int = 100,
        retry_backoff: RetryBackoff | None = None,
        reap_interval: float | timedelta = 15.0,
        retention: float | timedelta = timedelta(days=7),
        prune_interval: float | timedelta = 300.0,
        unrunnable_job_timeout: float | timedelta | None = 3600.0,
        orphan_retries: int = 2,
        max_payload_bytes: int = 64 * 1024,
        max_result_bytes: int = 64 * 1024,
        listener_check_interval: float | timedelta = 15.0,
        listener_check_timeout: float | timedelta = 5.0,
        cancel_wait: float | timedelta = 10.0,
        tasks: Sequence[Callable[..., Any]] = (),
        queues: Sequence[str] | None = None,
        prefetch: int | None = None,
        middleware: Sequence[Middleware] = (),
        event_handlers: Sequence[EventHandler] = (),
        extensions: Sequence[Extension] = (),
        process_pool_size: int | None = None,
        process_max_jobs_per_child: int | None = None,
        process_max_memory_per_child_mb: int | None = None,
        http_allowed_hosts: Sequence[str] = (),
        listen_dsn: str | None = None,
        listen: bool = True,
    ) -> None:
        self.config = SchedulerConfig.from_options(
            max_concurrent_jobs,
            schema=schema,
            auto_migrate=auto_migrate,
            lease_time=lease_time,
            heartbeat_interval=heartbeat_interval,
            poll_interval=poll_interval,
            shutdown_grace=shutdown_grace,
            claim_batch_size=claim_batch_size,
            retry_backoff=retry_backoff,
            reap_interval=reap_interval,
            retention=retention,
            prune_interval=prune_interval,
            unrunnable_job_timeout=unrunnable_job_timeout,
            orphan_retries=orphan_retries,
            max_payload_bytes=max_payload_bytes,
            max_result_bytes=max_result_bytes,
            listener_check_interval=listener_check_interval,
            listener_check_timeout=listener_check_timeout,
            cancel_wait=cancel_wait,
            queues=queues,
            prefetch=prefetch,
            process_pool_size=process_pool_size,
            process_max_jobs_per_child=process_max_jobs_per_child,
            process_max_memory_per_child_mb=process_max_memory_per_child_mb,
            http_allowed_hosts=http_allowed_hosts,
            listen=listen,
        )
        if store is None:
            # A DSN string gets a pool of the scheduler's own, closed by shutdown().
            self._pool: asyncpg.Pool | None
            self._pool, self._owns_pool = pool_for(db_pool)
            store = PostgresJobStore(self._pool, self.config.schema)
        elif db_pool is None:
            self._pool, self._owns_pool = None, False
        else:
            self._pool, self._owns_pool = pool_for(db_pool)
        # Kept out of the config: a DSN may hold a password, and the config is printable.
        self._listen_dsn = pooling.validate_listen_dsn(listen_dsn)
        poll_only.check_listen_dsn(self.config.listen, self._listen_dsn)
        # Everything below talks to the database through the port only.
        self._store: JobStore = store
        self._tasks = TaskCatalog()
        self._observability = observability(middleware, event_handlers, extensions)
        self._unserved = UnservedTaskCheck(self._store, self._serves)
        # Schedules declared in code, written (idempotently) by start().
        self._declared: dict[str, NewSchedule] = {}
        for func in tasks:
            self.register(func)
        if self.config.http_allowed_hosts:  # else HTTP jobs are left to replicas that allow
            self._tasks.own.add(http.http_task(self.config.http_allowed_hosts))
        self._identity = WorkerIdentity()
        self._state = SchedulerState.NEW
        # The services, built by start() (some read the event loop's clock, and a
        # Scheduler may be created where no loop runs yet).
        self._runtime: Runtime | None = None
        # wait_for_job() calls in progress, woken by the listener's notifications.
        self._finished = FinishedJobs()

    # -- lifecycle --------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending schema migrations (idempotent, safe to run from many replicas)."""
        async with borrowed(self._require_pool("migrate()")) as conn:
            return await migrations.migrate(conn, self.config.schema)

    async def start(self) -> None:
        """Migrate (unless disabled), register this worker, start claiming jobs.

        If it fails or is cancelled, nothing is left running and the error is raised as
        itself."""
        if self._state in (SchedulerState.STOPPED, SchedulerState.FAILED):
            raise SchedulerStoppedError(
                f"start() after shutdown: the scheduler is {self._state.value}, and a"
                " Scheduler starts only once; create a new Scheduler to start again"
            )
        if self._state is not SchedulerState.NEW:
            raise SchedulerAlreadyRunningError(
                f"start() was already called: the scheduler is already {self._state.value}"
                " (start it once; `async with scheduler:` starts it for you)"
            )
        if self._pool is not None:
            # A listener holds one connection for good: with one, nothing else could run.
            poll_only.check_pool_size(self._pool, self.config.listen)
        self._state = SchedulerState.STARTING
        try:
            await self._start()
        except BaseException:
            if self._runtime is not None:
                with anyio.CancelScope(shield=True):
                    await self._runtime.abort_start()
            self._state = SchedulerState.STOPPED
            raise
        self._state = SchedulerState.RUNNING
        logger.info("scheduler started as worker %s", self._identity.current)

    async def _start(self) -> None:
        self._runtime = Runtime(
            self.config,
            self._pool,
            self._store,
            self._tasks,
            self._observability,
            self._identity,
            self._finished,
            queue_names=lambda: self.queues,
            health=lambda: self.health,
            on_failed=self._failed,
            listen_dsn=self._listen_dsn,
        )
        if self._pool is not None:
            await pooling.check_statement_cache(self._pool)
        if self._pool is None:
            pass  # a store given without a pool keeps its own schema
        elif self.config.auto_migrate:
            await self.migrate()
        else:
            async with borrowed(self._pool) as conn:
                await migrations.check_schema(conn, self.config.schema)
        for declared in self._declared.values():
            await self._store.insert_schedule(
                declared,
                first_fire_time(declared.schedule_id, declared.trigger_json),
                ConflictResolution.REPLACE,
            )
        await self._runtime.start()

    def _started(self) -> Runtime:
        """The runtime start() built (tests reach into its services through this)."""
        if self._runtime is None:
            raise SchedulerNotRunningError("the scheduler was not started")
        return self._runtime

    def _failed(self) -> None:
        self._state = SchedulerState.FAILED

    async def shutdown(self, grace: float | timedelta | None = None) -> None:
        """Stop claiming; let running jobs finish within the grace period while still
        heartbeating; then cancel the rest and release them so peers take them at once.

        Returns within the grace period plus a few seconds, whatever the jobs do: an
        attempt that does not stop when cancelled is abandoned (its lease lapses and a peer
        reruns it after `lease_time`). Called again while draining with a shorter `grace`
        (0: at once), it cuts the drain short."""
        if self._state in (SchedulerState.NEW, SchedulerState.STOPPED, SchedulerState.FAILED):
            if self._state is SchedulerState.NEW:
                self._state = SchedulerState.STOPPED
                # A producer's waits may have a listening connection open: hand it back.
                with anyio.CancelScope(shield=True), anyio.move_on_after(UNREGISTER_BOUND):
                    await self._store.release_connections()
            await self._close_own_pool()
            return
        runtime = self._runtime
        assert runtime is not None  # built first thing by start()
        limit = None if grace is None else seconds(grace, "grace")
        self._state = SchedulerState.STOPPING
        await runtime.stop(limit)
        if self._state is SchedulerState.STOPPING:
            self._state = SchedulerState.STOPPED
        await self._close_own_pool()

    async def _close_own_pool(self) -> None:
        if self._owns_pool and self._pool is not None:
            await self._pool.close()

    def _require_pool(self, what: str) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigurationError(
                f"{what} needs a database pool: this Scheduler was given a store and no"
                " db_pool; pass the pool too"
            )
        return self._pool

    @property
    def state(self) -> SchedulerState:
        """Where the scheduler is in its life; `FAILED` after a fatal background error
        (see `failure`): it then runs no jobs, so a health check should report it."""
        return self._state

    @property
    def health(self) -> Health:
        """What a health check should report: `health.healthy` is False unless the
        scheduler runs and claims work (False once every claim has failed for longer than
        `lease_time`; True again when one works). `health.describe()` says why."""
        runtime = self._runtime  # built by start()
        error = None if runtime is None else runtime.dispatcher.last_error
        return Health(
            state=self._state,
            claims_failing_for=0.0 if runtime is None else runtime.dispatcher.failing_for(),
            claim_error=None if error is None else repr(error),
            claim_failure_limit=self.config.lease_time,
        )

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the scheduler, if one did."""
        return None if self._runtime is None else self._runtime.failure

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    @property
    def worker_id(self) -> uuid.UUID:
        """This replica's current lease identity (new after every lost lease)."""
        return self._identity.current

    @property
    def running_job_ids(self) -> list[str]:
        """Jobs whose code runs on this replica right now."""
        running = () if self._runtime is None else self._runtime.running
        return [entry.job_id for entry in running if entry.executing]

    # -- tasks ------------------------------------------------------------------------
    def register(
        self,
        func: F,
        /,
        *,
        name: str | None = None,
        max_retries: int = 0,
        timeout: float | timedelta | None = None,
        backoff: RetryBackoff | None = None,
        queue: str = "default",
        middleware: Sequence[Middleware] = (),
        executor: str | None = None,
    ) -> F:
        """Let this replica run `func` (under `name`, default ``module:qualname``);
        `schedule(func)` then stores jobs under that name, in `queue` unless told otherwise.
        `middleware` wraps its attempts, inside the scheduler's own (see `Middleware`);
        `executor="process"` runs its jobs in the replica's process pool."""
        self._tasks.register(
            func,
            name=name,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            queue=queue,
            middleware=middleware,
            executor=executor,
        )
        return func

    @property
    def queues(self) -> list[str]:
        """The queues this replica claims from: the `queues` it was given, else "default"
        and the queues of the tasks it runs."""
        return list(self.config.queues) if self.config.queues else self._tasks.queues()

    # -- producing --------------------------------------------------------------------
    async def schedule(
        self,
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
        connection: TransactionConnection | None = None,
        depends_on: Sequence[str] = (),
        queue: str | None = None,
        lock_key: str | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Enqueue one run of `func`; returns the job id. Nothing is written on bad input.

        With no `execution_time` and no `delay` the job is due now. Pass `connection` (an
        asyncpg connection, a SQLAlchemy AsyncSession or AsyncConnection, or a psycopg 3
        AsyncConnection) to enqueue inside your own transaction: the job exists only if it
        commits (see `scheduler.connections`). With
        `depends_on` (existing job ids) it starts only once all of them succeeded, and is
        cancelled if one fails or is cancelled (see Dependencies in the docs). `queue`
        overrides the task's queue; jobs sharing a `lock_key` never run at the same time;
        a `unique_key` admits one unfinished job per key (`conflict_resolution` decides
        what a second one does, as for `job_id`).
        """
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
        conflict = validation.validate_conflict_resolution(conflict_resolution)
        new_jobs = self._observability.with_trace_context([self._validate(request)])
        dependencies.check_batch(new_jobs, conflict)
        ids = await connections.insert_jobs(
            self._store, self.config.schema, new_jobs, conflict, connection
        )
        self._observability.scheduled(new_jobs, ids)
        await self._unserved.check(job.task_name for job in new_jobs)
        return ids[0]

    async def schedule_many(
        self,
        requests: Iterable[JobRequest],
        *,
        conflict_resolution: ConflictResolution = ConflictResolution.RAISE,
        connection: TransactionConnection | None = None,
    ) -> list[str]:
        """Enqueue many jobs in one statement, all or nothing; returns their ids in order.

        Every request is validated before anything is written. A conflict the policy does
        not absorb (RAISE: an existing id; REPLACE: a running job) raises and writes none
        of them. Ids must be unique within one call.
        """
        conflict = validation.validate_conflict_resolution(conflict_resolution)
        new_jobs = [self._validate(request) for request in requests]
        seen: set[str] = set()
        seen_keys: set[str] = set()
        for job in new_jobs:
            if job.job_id in seen:
                raise InvalidJobError(f"job_id {job.job_id!r} appears twice in one batch")
            seen.add(job.job_id)
            if job.unique_key is not None:
                if job.unique_key in seen_keys:
                    raise InvalidJobError(
                        f"unique_key {job.unique_key!r} appears twice in one batch"
                    )
                seen_keys.add(job.unique_key)
        dependencies.check_batch(new_jobs, conflict)
        if not new_jobs:
            return []
        new_jobs = self._observability.with_trace_context(new_jobs)
        ids = await connections.insert_jobs(
            self._store, self.config.schema, new_jobs, conflict, connection
        )
        self._observability.scheduled(new_jobs, ids)
        await self._unserved.check(job.task_name for job in new_jobs)
        return ids

    def _serves(self, task_name: str) -> bool:
        """Whether this replica runs `task_name` now (no need to ask the database)."""
        return self._state is SchedulerState.RUNNING and task_name in self._tasks.own

    def _validate(self, request: JobRequest) -> NewJob:
        """Turn a request into a row to insert, or raise a typed error; writes nothing."""
        task = self._tasks.resolve(request.func)
        return validation.new_job(request, task, max_payload_bytes=self.config.max_payload_bytes)

    async def cancel_job(self, job_id: str, *, wait: float | timedelta | None = None) -> bool:
        """Cancel a job. True when this call cancelled it.

        A pending job is cancelled at once and never starts. A running job's coroutine is
        cancelled on whichever replica runs it, without retry; this waits up to `wait`
        seconds (default `cancel_wait`) for that attempt to end and returns True only if
        it ended cancelled (False if it finished first, or is still ending: the request
        stands and is honoured). Unknown and finished jobs return False.
        """
        previous = await self._store.cancel_job(job_id)
        if previous is None:
            return False
        if previous in (JobStatus.PENDING, JobStatus.BLOCKED):
            self._observability.pending_cancelled(job_id)
            return True
        if self._runtime is not None:  # ours? then no need to wait for the NOTIFY
            self._runtime.on_cancel_requested(job_id)
        limit = self.config.cancel_wait if wait is None else seconds(wait, "wait")
        status = await self._store.job_status(job_id)
        # The deadline covers the reads too (a busy pool makes them wait for a connection).
        with anyio.move_on_after(limit):
            delay = 0.01
            while not (status is None or status.is_terminal):
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)
                status = await self._store.job_status(job_id)
        return status is JobStatus.CANCELLED

    async def get_job(self, job_id: str) -> Job | None:
        """A read-only snapshot of a job, or None if there is no such job (or it was
        pruned after the retention period)."""
        return await self._store.get_job(job_id)

    async def retry_job(
        self,
        job_id: str,
        at: datetime | None = None,
        *,
        delay: float | timedelta | None = None,
    ) -> None:
        """Put a failed or cancelled job back to pending, at `at`, after `delay`, or now.
        Its budgets start afresh (`failures` and `lost_leases` to 0); `attempts` keeps
        counting and its history stays. `JobNotFoundError` for an unknown job,
        `JobNotRetryableError` for one that is pending, running or succeeded."""
        await manual_retries.retry_job(self._store, job_id, at, delay)

    async def retry_failed_jobs(
        self,
        task: Callable[..., Any] | str | None = None,
        *,
        since: datetime | None = None,
        at: datetime | None = None,
    ) -> int:
        """Retry, as `retry_job()` does, every job of `task` (None: of any task) that ended
        failed since `since` (None: ever) and before this call, in batches; returns how
        many. Rows being written at that moment are skipped."""
        task_name = None if task is None else self._tasks.resolve(task).name
        return await manual_retries.retry_failed_jobs(self._store, task_name, since, at)

    async def get_attempts(self, job_id: str) -> list[Attempt]:
        """The job's ended attempts, oldest first: number, outcome, worker, host, times,
        error (empty for an unknown or pruned job, or one that never ended an attempt)."""
        return await self._store.get_attempts(job_id)

    async def wait_for_job(self, job_id: str, timeout: float | timedelta | None = None) -> Job:
        """Wait until the job finishes (succeeded, failed or cancelled) and return it, with
        its `result`. Works in any process, started or not. Raises `JobWaitTimeoutError`
        after `timeout` seconds (None: no limit; the job goes on) and `JobNotFoundError`
        for an unknown (or pruned) job."""
        limit = None if timeout is None else seconds(timeout, "timeout")
        # A running scheduler's listener wakes the wait (a store given without a pool, or
        # listen=False, has none: the wait listens or polls as a producer's does).
        listening = (
            self._state is SchedulerState.RUNNING and self._pool is not None and self.config.listen
        )
        return await waiting.wait_for_job(
            self._store, self._finished, job_id, limit, listening=listening
        )

    # -- flow control -----------------------------------------------------------------
    async def pause_queue(self, queue: str) -> None:
        """Stop every replica claiming from `queue` until `resume_queue()`; running jobs
        finish, and its pending jobs wait (they are never failed as unrunnable)."""
        await self._store.pause_queue(validation.validate_queue_name(queue, ConfigurationError))

    async def resume_queue(self, queue: str) -> bool:
        """Let replicas claim from `queue` again. True if it was paused."""
        return await self._store.resume_queue(
            validation.validate_queue_name(queue, ConfigurationError)
        )

    async def set_queue_limits(
        self,
        queue: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: int | None = None,
        rate_period: float | timedelta = 1.0,
        rate_burst: int = 1,
    ) -> None:
        """Replace the fleet-wide limits of `queue` (None: no limit of that kind); see
        `Limits`. They apply to every claim that starts after this returns."""
        limits = validate_limits(concurrency_limit, rate_limit, rate_period, rate_burst)
        name = validation.validate_queue_name(queue, ConfigurationError)
        await self._store.set_queue_limits(name, limits)

    async def set_task_limits(
        self,
        func: Callable[..., Any] | str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: int | None = None,
        rate_period: float | timedelta = 1.0,
        rate_burst: int = 1,
    ) -> None:
        """Replace the fleet-wide limits of a task, across all queues (None: no limit of
        that kind; both None removes them); see `Limits`."""
        limits = validate_limits(concurrency_limit, rate_limit, rate_period, rate_burst)
        await self._store.set_task_limits(self._tasks.resolve(func).name, limits)

    async def set_limit(
        self, limit: Limit, *, queue: str | None = None, task_name: str | None = None
    ) -> None:
        """Set one limit on `queue` or on the task `task_name` (in every queue), replacing
        the limit of the same kind there: `ConcurrencyLimit`, `RateLimit`, or any other
        kind (scheduler/limits/). It applies to every claim that starts after this returns.
        A kind the database has no functions for is refused (`ConfigurationError`)."""
        if not isinstance(limit, Limit) or isinstance(limit, StoredLimit):
            raise ConfigurationError(
                f"limit must be a limit kind such as ConcurrencyLimit(5), got {limit!r}"
            )
        scope, name = self._limit_scope(queue, task_name)
        await self._store.set_limit(scope, name, limit.kind, limit.settings())

    async def remove_limit(
        self, kind: type[Limit], *, queue: str | None = None, task_name: str | None = None
    ) -> None:
        """Remove the limit of `kind` (e.g. `RateLimit`) from `queue` or the task
        `task_name`; nothing happens when there is none."""
        if not (isinstance(kind, type) and issubclass(kind, Limit)) or not kind.__dict__.get(
            "kind"
        ):
            raise ConfigurationError(f"kind must be a limit kind such as RateLimit, got {kind!r}")
        scope, name = self._limit_scope(queue, task_name)
        await self._store.set_limit(scope, name, kind.kind, None)

    @staticmethod
    def _limit_scope(queue: str | None, task_name: str | None) -> tuple[str, str]:
        scope, name = limit_scope(queue, task_name)
        if scope == "queue":
            name = validation.validate_queue_name(name, ConfigurationError)
        return scope, name

    async def queue_stats(self) -> list[QueueStats]:
        """Every queue with jobs waiting or running, or with settings: its backlog,
        running jobs, paused state and limits, and `problem`: why its limits cannot be
        enforced (a row out of bounds; its jobs wait until the limits are set again)."""
        return await self._store.queue_stats()

    async def task_limits(self) -> list[TaskLimits]:
        """Every task with limits, how many of its jobs run now, and `problem` (as in
        queue_stats())."""
        return await self._store.task_limits()

    # -- recurring schedules ----------------------------------------------------------
    async def add_schedule(
        self,
        func: Callable[..., Any] | str,
        trigger: Trigger,
        *,
        conflict_resolution: ConflictResolution = ConflictResolution.RAISE,
        **options: Unpack[ScheduleOptions],
    ) -> str:
        """Fire `func` on every slot of `trigger`, each slot as one ordinary job; returns
        the schedule id (a new UUID unless `schedule_id` is given).

        Options: `args`, `kwargs`, `priority`, `max_retries`, `timeout` as for
        `schedule()`; `coalesce` (a `CoalescePolicy`, default LATEST) for slots missed
        while no replica ran; `misfire_grace_time` (seconds, default no limit) drops slots
        that would start later than that; `max_running` (default 1, None for no limit)
        skips a slot while that many of the schedule's jobs are unfinished; `jitter`
        (seconds) delays each job by a random amount, never past the next slot; `queue`
        (default: the task's) is the queue of its jobs.

        `conflict_resolution` for an existing id: RAISE (`ScheduleAlreadyExistsError`),
        IGNORE (keep it), REPLACE (overwrite its definition; it keeps its paused state,
        and its next fire time unless the trigger changed). Nothing is written on bad input.
        """
        conflict = validation.validate_conflict_resolution(conflict_resolution)
        new = validation.new_schedule(func, trigger, options, self._validate)
        await self._store.insert_schedule(
            new, first_fire_time(new.schedule_id, new.trigger_json), conflict
        )
        return new.schedule_id

    def scheduled(self, trigger: Trigger, **options: Unpack[ScheduleOptions]) -> Callable[[F], F]:
        """Declare a schedule in code: the decorated function becomes a task and the
        schedule is written when the scheduler starts (REPLACE: every replica can declare
        the same schedules; an unchanged one is left alone). The schedule id defaults to
        the task name."""

        def declare(func: F) -> F:
            new = validation.new_schedule(
                func, trigger, options, self._validate, default_id_is_task=True
            )
            if new.schedule_id in self._declared:
                raise InvalidScheduleError(
                    f"schedule {new.schedule_id!r} is declared twice; give each declaration"
                    " its own schedule_id"
                )
            self._declared[new.schedule_id] = new
            return func

        return declare

    def cron(
        self, expression: str, *, timezone: str = "UTC", **options: Unpack[ScheduleOptions]
    ) -> Callable[[F], F]:
        """Declare a cron schedule: ``@scheduler.cron("*/5 * * * *", timezone="Europe/Berlin")``.

        Five fields, or six with seconds FIRST (``"30 */5 * * * *"``: second 30 of every
        fifth minute), unlike croniter's seconds-last six fields; see `CronTrigger`."""
        return self.scheduled(CronTrigger(expression, timezone), **options)

    def every(
        self,
        *,
        weeks: float = 0,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        **options: Unpack[ScheduleOptions],
    ) -> Callable[[F], F]:
        """Declare an interval schedule: ``@scheduler.every(minutes=5)``."""
        trigger = IntervalTrigger(
            weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        return self.scheduled(trigger, **options)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        return await self._store.get_schedule(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        return await self._store.list_schedules()

    async def pause_schedule(self, schedule_id: str) -> bool:
        """Stop firing (on every replica) until resumed. False if there is no such schedule."""
        return await self._store.pause_schedule(schedule_id)

    async def resume_schedule(self, schedule_id: str) -> bool:
        """Fire again from the next slot after now; slots passed while paused do not run."""
        return await self._store.resume_schedule(schedule_id, resume_fire_time)

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule. Jobs it already fired stay and run as ordinary jobs."""
        return await self._store.remove_schedule(schedule_id)
