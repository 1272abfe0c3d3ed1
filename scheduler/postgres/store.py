"""The PostgreSQL implementation of the storage port, on an asyncpg pool."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from scheduler.dependencies import dependency_order
from scheduler.errors import (
    ConfigurationError,
    InvalidJobError,
    JobAlreadyExistsError,
    JobConflictError,
    JobIsRunningError,
    JobNotFoundError,
    JobNotRetryableError,
    ScheduleAlreadyExistsError,
    SchemaNotReadyError,
    UniqueKeyConflictError,
    UnknownDependencyError,
)
from scheduler.extensions import QueueDepth
from scheduler.flow import Limits, QueueStats, TaskLimits, legacy_limits
from scheduler.limits import Limit, limit_from_row
from scheduler.models import (
    Attempt,
    AttemptOutcome,
    CoalescePolicy,
    ConflictResolution,
    Job,
    JobPriority,
    JobStatus,
    Schedule,
)
from scheduler.outcomes import Succeeded
from scheduler.postgres.connection import (
    AnyConnection,
    BoundedPool,
    KeptConnections,
    pooled_transaction,
)
from scheduler.postgres.sql import Queries, channel_for
from scheduler.postgres.wait_listener import SharedWaitListener
from scheduler.recurring import StoredDueSchedule
from scheduler.serialization import decode_arguments, load_json
from scheduler.store import (
    AttemptEnd,
    AttemptKey,
    ClaimedJob,
    ClaimResult,
    FirePlanner,
    FirstFirePlanner,
    FirstFireTime,
    HeartbeatResult,
    Lease,
    NewJob,
    NewSchedule,
    ResumeFireTime,
    Success,
    UnservedTask,
)
from scheduler.triggers import Trigger, UnreadableTrigger, trigger_from_json

logger = logging.getLogger("scheduler.store")

#: Claim order: highest priority first. The claim query scans one priority at a time.
PRIORITIES_DESCENDING = sorted((p.value for p in JobPriority), reverse=True)

#: The queue label of a claimed job whose queue could not be read with its claim.
UNKNOWN_QUEUE = "unknown"

#: How often the waits' shared LISTEN connection is checked, and how long it may take to answer.
WAIT_LISTENER_CHECK_INTERVAL = 15.0
WAIT_LISTENER_CHECK_TIMEOUT = 5.0

Executor: TypeAlias = "asyncpg.Pool[Any] | BoundedPool | AnyConnection"

#: Bulk enqueue under RAISE (no dependencies, no unique keys) COPYs its rows instead of
#: sending the unnest statement: a COPY needs no ON CONFLICT and no RETURNING, and on its
#: own it is one round trip against the statement's three (BEGIN, INSERT, COMMIT). Measured
#: (docs/benchmarks.md, W1 bulk) it is as fast from 2 rows up when it runs alone, and from
#: about 20 when it needs a transaction (a savepoint in the caller's transaction, or the
#: database clock read first for rows given a delay).
COPY_MIN_ROWS = 2
COPY_MIN_ROWS_IN_TRANSACTION = 20

#: The jobs columns a COPY writes, in the order of `_copy_record`; execution_time last, so
#: a batch due now can leave it out and take the column's default, now().
COPY_COLUMNS = (
    "job_id",
    "task_name",
    "args",
    "kwargs",
    "priority",
    "max_retries",
    "timeout_seconds",
    "queue",
    "lock_key",
    "unique_key",
    "trace_context",
    "execution_time",
)


class PostgresJobStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        # Every statement waits for its connection with a deadline, never for ever.
        self._db = BoundedPool(pool)
        self.schema = schema
        self.q = Queries(schema)
        # The per-job statements reuse a connection instead of paying the pool's reset.
        self._kept = KeptConnections(pool)
        # The one LISTEN the waits of a producer share, open while some wait is in progress.
        self._waits = SharedWaitListener(
            pool,
            channel_for(schema),
            check_interval=WAIT_LISTENER_CHECK_INTERVAL,
            check_timeout=WAIT_LISTENER_CHECK_TIMEOUT,
        )

    # -- producers --------------------------------------------------------------------
    async def insert_jobs(
        self,
        jobs: Sequence[NewJob],
        conflict: ConflictResolution,
        connection: AnyConnection | None = None,
    ) -> list[str]:
        replace = conflict is ConflictResolution.REPLACE
        if any(job.depends_on for job in jobs):
            return await self._insert_dependent_jobs(jobs, conflict, connection)
        unique = any(job.unique_key is not None for job in jobs)
        if len(jobs) == 1 and not unique:  # one row in one statement: atomic, no transaction
            [job] = jobs
            row = _job_row(job)
            executor: Executor | KeptConnections = (
                connection if connection is not None else self._kept
            )
            with _schema_guard(self.schema):
                written = await executor.fetchval(
                    self.q.upsert_job if replace else self.q.insert_job, *row
                )
            if written is None and conflict is not ConflictResolution.IGNORE:
                raise _conflict_error([job.job_id], conflict)
            return [job.job_id]
        # RAISE needs no ON CONFLICT: COPY, when the batch is big enough to gain by it.
        if (
            conflict is ConflictResolution.RAISE
            and not unique
            and await self._copy_jobs(jobs, connection)
        ):
            return [j.job_id for j in jobs]

        with _schema_guard(self.schema):
            async with contextlib.AsyncExitStack() as stack:
                conn: AnyConnection = (
                    connection
                    if connection is not None
                    else await stack.enter_async_context(self._db.acquire())
                )
                # A savepoint inside the caller's transaction: raising rolls the batch back.
                async with conn.transaction():
                    if unique:
                        return await self._insert_unique_jobs(conn, jobs, conflict)
                    query = self.q.upsert_jobs if replace else self.q.insert_jobs
                    columns = _columns([_job_row(job) for job in jobs])
                    written = {row["job_id"] for row in await conn.fetch(query, *columns)}
                    refused = [j.job_id for j in jobs if j.job_id not in written]
                    if refused and conflict is not ConflictResolution.IGNORE:
                        raise _conflict_error(refused, conflict)
        return [j.job_id for j in jobs]

    async def _copy_jobs(self, jobs: Sequence[NewJob], connection: AnyConnection | None) -> bool:
        """Write a RAISE batch (no dependencies, no unique keys) with one COPY, all or
        nothing. False when it wrote nothing: the batch is below the size at which COPY
        pays (see COPY_MIN_ROWS), or an id exists (the COPY failed whole and the statement
        path, run next, names the conflicting ids as always).

        Due times come from the database clock, as the statement's now() + delay: a batch
        due now leaves execution_time to its default now(); otherwise rows without a time
        get now() read in the same transaction (the same value the statement would use)
        plus their delay, rounded to microseconds as make_interval() does."""
        timed = sum(job.execution_time is not None for job in jobs)
        read_now = timed < len(jobs) and (timed > 0 or any(job.delay_seconds for job in jobs))
        in_transaction = connection is not None or read_now
        if len(jobs) < (COPY_MIN_ROWS_IN_TRANSACTION if in_transaction else COPY_MIN_ROWS):
            return False
        columns = COPY_COLUMNS if timed or read_now else COPY_COLUMNS[:-1]
        try:
            with _schema_guard(self.schema):
                async with contextlib.AsyncExitStack() as stack:
                    conn: AnyConnection = (
                        connection
                        if connection is not None
                        else await stack.enter_async_context(self._db.acquire())
                    )
                    if in_transaction:  # a savepoint in the caller's: a failure undoes ours
                        await stack.enter_async_context(conn.transaction())
                    now: datetime | None = (
                        await conn.fetchval(self.q.database_now) if read_now else None
                    )
                    await conn.copy_records_to_table(
                        "jobs",
                        schema_name=self.schema,
                        columns=columns,
                        records=[_copy_record(job, now)[: len(columns)] for job in jobs],
                    )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def _insert_dependent_jobs(
        self,
        jobs: Sequence[NewJob],
        conflict: ConflictResolution,
        connection: AnyConnection | None,
    ) -> list[str]:
        """Insert, then record dependencies (dependencies first) in the same transaction:
        no claim ever sees such a job pending before it waits. A job IGNORE kept (it
        existed, or another unfinished job holds its unique key) keeps what it had."""
        columns = _columns([_job_row(job) for job in jobs])
        with _schema_guard(self.schema), _dependency_errors():
            async with contextlib.AsyncExitStack() as stack:
                conn: AnyConnection = (
                    connection
                    if connection is not None
                    else await stack.enter_async_context(self._db.acquire())
                )
                async with conn.transaction():
                    rows = await conn.fetch(self.q.insert_jobs, *columns)
                    written = {row["job_id"] for row in rows}
                    ids = await self._refused_ids(conn, jobs, written, conflict)
                    for job in dependency_order(jobs):
                        if job.depends_on and job.job_id in written:
                            await conn.fetchval(
                                self.q.add_dependencies, job.job_id, list(job.depends_on)
                            )
        return ids

    async def _insert_unique_jobs(
        self, conn: AnyConnection, jobs: Sequence[NewJob], conflict: ConflictResolution
    ) -> list[str]:
        """A batch where some jobs carry a unique key, inside the caller's transaction.
        Returns, in order, each job's id, or for one IGNORE met on its unique key the id
        of the unfinished job holding the key."""
        if conflict is ConflictResolution.REPLACE:
            ids: list[str] = []
            for job in jobs:
                query = self.q.upsert_job if job.unique_key is None else self.q.upsert_unique_job
                try:
                    written = await conn.fetchval(query, *_job_row(job))
                except asyncpg.UniqueViolationError as exc:
                    # REPLACE by unique key met another job under this job_id, or REPLACE
                    # by id would give this row a key another unfinished job holds.
                    raise _unique_violation_error(job, exc) from None
                if written is None:
                    raise _conflict_error([job.job_id], conflict)
                ids.append(written)
            return ids
        columns = _columns([_job_row(job) for job in jobs])
        written = {row["job_id"] for row in await conn.fetch(self.q.insert_jobs, *columns)}
        return await self._refused_ids(conn, jobs, written, conflict)

    async def _refused_ids(
        self,
        conn: AnyConnection,
        jobs: Sequence[NewJob],
        written: set[str],
        conflict: ConflictResolution,
    ) -> list[str]:
        """After inserting (RAISE or IGNORE) `jobs`, of which `written` went in: the error
        for a refused one, or under IGNORE each job's id, or for one refused on its unique
        key the id of the unfinished job holding the key."""
        refused = [job for job in jobs if job.job_id not in written]
        if not refused:
            return [job.job_id for job in jobs]
        keys = [job.unique_key for job in refused if job.unique_key is not None]
        if not keys:
            if conflict is not ConflictResolution.IGNORE:
                raise _conflict_error([job.job_id for job in refused], conflict)
            return [job.job_id for job in jobs]
        holders = {
            row["unique_key"]: row["job_id"]
            for row in await conn.fetch(self.q.unique_key_holders, keys)
        }
        ids = []
        for job in jobs:
            if job.job_id in written:
                ids.append(job.job_id)
                continue
            holder = holders.get(job.unique_key) if job.unique_key is not None else None
            if conflict is ConflictResolution.IGNORE:
                # The id of the job that kept the key; with none (it finished meanwhile, or
                # the id itself was taken), the id asked for, as IGNORE does for ids.
                ids.append(holder if holder is not None else job.job_id)
            elif holder is not None and holder != job.job_id:
                raise UniqueKeyConflictError(
                    f"job {holder!r} already holds unique_key {job.unique_key!r} (it is"
                    " pending, blocked or running); pass"
                    " conflict_resolution=ConflictResolution.IGNORE to keep it or REPLACE to"
                    " overwrite it while it is pending",
                    holder,
                )
            else:
                raise _conflict_error([job.job_id], conflict)
        return ids

    async def cancel_job(self, job_id: str) -> JobStatus | None:
        with _schema_guard(self.schema):
            previous = await self._db.fetchval(self.q.cancel_job, job_id)
        return None if previous is None else JobStatus(previous)

    async def get_job(self, job_id: str) -> Job | None:
        with _schema_guard(self.schema):
            row = await self._db.fetchrow(self.q.get_job, job_id)
        return None if row is None else _job_from_row(row)

    async def job_status(self, job_id: str) -> JobStatus | None:
        with _schema_guard(self.schema):
            status = await self._db.fetchval(self.q.job_status, job_id)
        return None if status is None else JobStatus(status)

    async def task_served(self, task_name: str) -> tuple[bool, int]:
        with _schema_guard(self.schema):
            row = await self.pool.fetchrow(self.q.task_served, task_name)
        assert row is not None
        return bool(row["served"]), int(row["live_workers"])

    async def unserved_tasks(self, limit: int = 50) -> list[UnservedTask]:
        with _schema_guard(self.schema):
            rows = await self.pool.fetch(self.q.unserved_tasks, limit)
        return [
            UnservedTask(row["task_name"], row["queue"], row["pending"], row["oldest_due"])
            for row in rows
        ]

    async def retry_job(self, job_id: str, at: datetime | None, delay: float | None) -> None:
        try:
            with _schema_guard(self.schema):
                await self._db.fetchval(self.q.retry_job, job_id, at, delay)
        except asyncpg.NoDataFoundError as exc:
            raise JobNotFoundError(str(exc), job_id) from None
        except asyncpg.ObjectNotInPrerequisiteStateError as exc:
            raise JobNotRetryableError(str(exc), job_id) from None
        except asyncpg.UniqueViolationError:
            raise JobNotRetryableError(
                f"job {job_id!r} cannot be retried: another unfinished job holds its"
                " unique_key; let that job finish (or cancel it), then retry this one",
                job_id,
            ) from None

    async def retry_failed_jobs(
        self, task_name: str | None, since: datetime | None, at: datetime | None, batch: int
    ) -> int:
        with _schema_guard(self.schema):
            # Only jobs that failed before this call: one failing again is not retried twice.
            until = await self._db.fetchval(self.q.database_now)
            total = 0
            while True:
                rows = await self._db.fetch(
                    self.q.retry_failed_jobs, task_name, since, until, at, batch
                )
                total += len(rows)
                if len(rows) < batch:
                    return total

    async def get_attempts(self, job_id: str) -> list[Attempt]:
        with _schema_guard(self.schema):
            rows = await self._db.fetch(self.q.get_attempts, job_id)
        return [
            Attempt(
                attempt=row["attempt"],
                outcome=AttemptOutcome(row["outcome"]),
                worker_id=row["worker_id"],
                hostname=row["hostname"],
                claimed_at=row["claimed_at"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                error=row["error"],
                error_type=row["error_type"],
                error_message=row["error_message"],
            )
            for row in rows
        ]

    async def await_job(self, job_id: str) -> JobStatus | None:
        with _schema_guard(self.schema):
            status = await self._db.fetchval(self.q.await_job, job_id)
        return None if status is None else JobStatus(status)

    def finished_notifications(
        self, on_finished: Callable[[str], None], on_listening: Callable[[], None]
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self._waits.subscribed(on_finished, on_listening)

    # -- recurring schedules ----------------------------------------------------------
    async def insert_schedule(
        self, schedule: NewSchedule, first_fire_time: FirstFireTime, conflict: ConflictResolution
    ) -> bool:
        """Store a schedule; True when a row was written (False: IGNORE kept the existing
        one, or REPLACE found an identical definition)."""
        with _schema_guard(self.schema):
            now = await self._db.fetchval(self.q.database_now)
            replace = conflict is ConflictResolution.REPLACE
            written = await self._db.fetchval(
                self.q.upsert_schedule if replace else self.q.insert_schedule,
                schedule.schedule_id,
                schedule.task_name,
                schedule.args_json,
                schedule.kwargs_json,
                json.dumps(schedule.trigger_json),
                schedule.priority,
                schedule.max_retries,
                schedule.timeout,
                schedule.coalesce,
                schedule.misfire_grace_time,
                schedule.max_running,
                schedule.jitter,
                first_fire_time(now),
                schedule.queue,
            )
        if written is None and conflict is ConflictResolution.RAISE:
            raise ScheduleAlreadyExistsError(
                f"a schedule with id {schedule.schedule_id!r} already exists; pass"
                " conflict_resolution=ConflictResolution.IGNORE to keep it or REPLACE to"
                " overwrite its definition",
                schedule.schedule_id,
            )
        return written is not None

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        with _schema_guard(self.schema):
            row = await self._db.fetchrow(self.q.get_schedule, schedule_id)
        return None if row is None else _schedule_from_row(row)

    async def list_schedules(self) -> list[Schedule]:
        with _schema_guard(self.schema):
            rows = await self._db.fetch(self.q.list_schedules)
        return [_schedule_from_row(row) for row in rows]

    async def pause_schedule(self, schedule_id: str) -> bool:
        with _schema_guard(self.schema):
            return await self._db.fetchval(self.q.pause_schedule, schedule_id) is not None

    async def resume_schedule(self, schedule_id: str, fire_time: ResumeFireTime) -> bool:
        with _schema_guard(self.schema):
            async with pooled_transaction(self.pool) as conn:
                row = await conn.fetchrow(self.q.lock_schedule_for_resume, schedule_id)
                if row is None:
                    return False
                next_fire = fire_time(row["trigger"], row["now"])
                await conn.execute(self.q.resume_schedule, schedule_id, next_fire)
        return True

    async def remove_schedule(self, schedule_id: str) -> bool:
        with _schema_guard(self.schema):
            return await self._db.fetchval(self.q.remove_schedule, schedule_id) is not None

    async def fire_due_schedules(self, limit: int, planner: FirePlanner) -> int:
        """Turn the due slots of up to `limit` schedules into jobs and advance the
        schedules, all in one transaction. Returns how many schedules were due."""
        async with pooled_transaction(self.pool) as conn:
            rows = await conn.fetch(self.q.due_schedules, limit)
            if not rows:
                return 0
            firing = planner([_stored_due_schedule(row) for row in rows], rows[0]["now"])
            for schedule_id in firing.unreadable:
                await conn.execute(
                    self.q.park_schedule, schedule_id, firing.reasons.get(schedule_id)
                )
            if firing.jobs:
                jobs = [(j.job_id, j.schedule_id, j.fire_time, j.run_at) for j in firing.jobs]
                await conn.fetch(self.q.insert_schedule_jobs, *_columns(jobs))
            if firing.advances:
                advances = [
                    (a.schedule_id, a.next_fire_time, a.last_fire_time) for a in firing.advances
                ]
                await conn.execute(self.q.advance_schedules, *_columns(advances))
        return len(rows)

    async def plan_new_schedules(self, limit: int, planner: FirstFirePlanner) -> int:
        """Compute the first fire time of up to `limit` schedules added by SQL, in one
        transaction. Returns how many were planned."""
        async with pooled_transaction(self.pool) as conn:
            rows = await conn.fetch(self.q.unplanned_schedules, limit)
            if not rows:
                return 0
            planned = planner(
                [(row["schedule_id"], row["trigger"]) for row in rows], rows[0]["now"]
            )
            await conn.execute(
                self.q.plan_schedules,
                *_columns([(p.schedule_id, p.next_fire_time, p.error) for p in planned]),
            )
        return len(rows)

    async def next_schedule_delay(self) -> float | None:
        delay: float | None = await self._db.fetchval(self.q.next_schedule_delay)
        return delay

    # -- dispatcher -------------------------------------------------------------------
    async def claim_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        rows = await self._kept.fetch(
            self.q.claim_jobs,
            owner,
            list(task_names),
            PRIORITIES_DESCENDING,
            limit,
            lead,
            *_successes(carried),
            list(queues),
        )
        return await self._claim_result(owner, rows)

    async def claim_flow_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        rows = await self._kept.fetch(
            self.q.claim_flow_jobs,
            owner,
            list(task_names),
            list(queues),
            limit,
            lead,
            *_successes(carried),
        )
        return await self._claim_result(owner, rows)

    async def _claim_result(self, owner: UUID, rows: Sequence[asyncpg.Record]) -> ClaimResult:
        """The rows of either claim statement. The plain claim's `flow` row has no
        `controlled` column (it always means yes), nor `retry_in`; only the flow claim
        returns `problem` rows."""
        claimed = [row for row in rows if row["kind"] == "claimed"]
        flow = [row for row in rows if row["kind"] == "flow"]
        retry = [row["retry_in"] for row in flow if row.get("retry_in") is not None]
        late = {row["job_id"] for row in claimed if row["queue"] is None}
        details = await self._claimed_details(late) if late else {}
        return ClaimResult(
            claimed=[
                ClaimedJob(
                    lease=Lease(row["job_id"], owner, row["attempts"]),
                    task_name=row["task_name"],
                    args_json=row["args"],
                    kwargs_json=row["kwargs"],
                    max_retries=row["max_retries"],
                    timeout=row["timeout_seconds"],
                    failures=row["failures"],
                    starts_in=row["starts_in"],
                    due_epoch=row["due_epoch"],
                    queue=details.get(row["job_id"], row)["queue"] or UNKNOWN_QUEUE,
                    start_lag=row["start_lag"] or 0.0,
                    trace_context=details.get(row["job_id"], row)["trace_context"],
                )
                for row in claimed
            ],
            completed=frozenset(row["job_id"] for row in rows if row["kind"] == "completed"),
            flow=any(row.get("controlled", True) for row in flow),
            retry_in=min(retry) if retry else None,
            limit_problems=frozenset(row["problem"] for row in rows if row["kind"] == "problem"),
        )

    async def _claimed_details(self, job_ids: set[str]) -> dict[str, asyncpg.Record]:
        """The queue and trace context of jobs the flow claim took that its statement
        could not see (committed while the claim waited for its lock): rare, one read."""
        try:
            rows = await self._db.fetch(self.q.claimed_details, list(job_ids))
        except Exception as exc:  # the claim stands: only labels are missing
            logger.warning("reading the queues of %d claimed job(s) failed: %r", len(job_ids), exc)
            return {}
        return {row["job_id"]: row for row in rows}

    async def record_successes(self, successes: Sequence[Success]) -> set[str]:
        """Successes with no claim to carry them: end_attempts() on its own."""
        ended = await self.end_attempts(
            [Succeeded(s.result_json).ending(s, retry_delay=0.0) for s in successes]
        )
        return set(ended)

    async def next_due_delay(
        self, task_names: Sequence[str], queues: Sequence[str] = ("default",)
    ) -> tuple[float | None, float]:
        row = await self._kept.fetchrow(
            self.q.next_due_delay, list(task_names), PRIORITIES_DESCENDING, list(queues)
        )
        assert row is not None  # an aggregate always returns one row
        return row["delay"], row["clock"]

    # -- one attempt's outcome --------------------------------------------------------
    async def end_attempts(self, ends: Sequence[AttemptEnd]) -> dict[str, JobStatus]:
        if not ends:
            return {}
        rows = await self._kept.fetch(self.q.end_attempts, *_attempt_end_columns(ends))
        return {row["job_id"]: JobStatus(row["status"]) for row in rows}

    # -- worker leases ----------------------------------------------------------------
    async def register_worker(
        self,
        owner: UUID,
        hostname: str,
        pid: int,
        tasks: Sequence[str],
        lease_time: float,
        queues: Sequence[str] | None = None,
    ) -> None:
        with _schema_guard(self.schema):
            await self._db.execute(
                self.q.register_worker,
                owner,
                hostname,
                pid,
                list(tasks),
                lease_time,
                ["default"] if queues is None else list(queues),
            )

    async def heartbeat(
        self,
        owner: UUID,
        tasks: Sequence[str],
        lease_time: float,
        queues: Sequence[str] | None = None,
    ) -> HeartbeatResult:
        row = await self._db.fetchrow(
            self.q.heartbeat,
            owner,
            lease_time,
            list(tasks),
            ["default"] if queues is None else list(queues),
        )
        assert row is not None  # the statement always returns one row
        return HeartbeatResult(
            alive=row["alive"],
            owned=frozenset(zip(row["owned"], row["owned_attempts"], strict=True)),
            cancel_requested=frozenset(row["cancel_requested"]),
        )

    async def unregister_worker(self, owner: UUID) -> None:
        await self._db.execute(self.q.unregister_worker, owner)

    async def release_connections(self) -> None:
        await self._kept.release_all()
        await self._waits.close()

    async def reclaim_attempts(
        self, owner: UUID, attempts: Sequence[AttemptKey], orphan_retries: int
    ) -> int:
        job_ids, numbers = [a[0] for a in attempts], [a[1] for a in attempts]
        rows = await self._db.fetch(
            self.q.reclaim_attempts, owner, job_ids, numbers, orphan_retries
        )
        for row in rows:
            logger.log(
                logging.ERROR if row["status"] == "failed" else logging.WARNING,
                "task %s job %s attempt %d was held by this worker but not run or recorded;"
                " handed back, now %s",
                row["task_name"],
                row["job_id"],
                row["attempts"],
                row["status"],
                extra=_log_fields(row),
            )
        return len(rows)

    # -- flow control -----------------------------------------------------------------
    async def pause_queue(self, queue: str) -> None:
        with _schema_guard(self.schema):
            await self._db.execute(self.q.pause_queue, queue)

    async def resume_queue(self, queue: str) -> bool:
        with _schema_guard(self.schema):
            was_paused: bool = await self._db.fetchval(self.q.resume_queue, queue)
        return was_paused

    async def set_queue_limits(self, queue: str, limits: Limits) -> None:
        with _schema_guard(self.schema):
            await self._db.execute(self.q.set_queue_limits, queue, *_limit_values(limits))

    async def set_task_limits(self, task_name: str, limits: Limits) -> None:
        with _schema_guard(self.schema):
            await self._db.execute(self.q.set_task_limits, task_name, *_limit_values(limits))

    async def queue_depths(self) -> list[QueueDepth]:
        with _schema_guard(self.schema):
            rows = await self._db.fetch(self.q.queue_depths)
        return [QueueDepth(row["queue"], row["due"], row["oldest_due_age"]) for row in rows]

    async def queue_stats(self) -> list[QueueStats]:
        with _schema_guard(self.schema):
            rows = await self._db.fetch(self.q.queue_stats)
        return [
            QueueStats(
                queue=row["queue"],
                due_now=row["due_now"],
                future=row["future"],
                running=row["running"],
                paused=row["paused"],
                limits=legacy_limits(limits := _all_limits(row)),
                problem=row["problem"],
                all_limits=limits,
            )
            for row in rows
        ]

    async def task_limits(self) -> list[TaskLimits]:
        with _schema_guard(self.schema):
            rows = await self._db.fetch(self.q.task_limits)
        return [
            TaskLimits(
                task_name=row["task_name"],
                running=row["running"],
                limits=legacy_limits(limits := _all_limits(row)),
                problem=row["problem"],
                all_limits=limits,
            )
            for row in rows
        ]

    async def set_limit(
        self, scope: str, name: str, kind: str, settings: dict[str, object] | None
    ) -> None:
        encoded = None if settings is None else json.dumps(settings)
        with _schema_guard(self.schema):
            try:
                await self._db.execute(self.q.set_limit, scope, name, kind, encoded)
            except asyncpg.InvalidParameterValueError as error:
                # The database's word on the kind (its settings, or no such kind there).
                raise ConfigurationError(error.args[0] if error.args else str(error)) from None

    # -- maintenance ------------------------------------------------------------------
    async def reap_orphans(self, limit: int, orphan_retries: int) -> int:
        rows = await self._db.fetch(self.q.reap_orphans, limit, orphan_retries)
        for row in rows:
            logger.log(
                logging.ERROR if row["status"] == "failed" else logging.WARNING,
                "task %s job %s attempt %d lost its lease (worker %s stopped heartbeating); now %s",
                row["task_name"],
                row["job_id"],
                row["attempts"],
                row["owner"],
                row["status"],
                extra=_log_fields(row),
            )
        return len(rows)

    async def take_fleet_pass(self, name: str, every_seconds: float) -> bool:
        return bool(await self._db.fetchval(self.q.take_fleet_pass, name, every_seconds))

    async def delete_dead_workers(self) -> int:
        return _row_count(await self._db.execute(self.q.delete_dead_workers))

    async def fail_unrunnable_jobs(self, after_seconds: float, limit: int) -> int:
        rows = await self._db.fetch(self.q.fail_unrunnable_jobs, after_seconds, limit)
        for row in rows:
            logger.error(
                "task %s job %s failed: no live worker registered its task within %s seconds"
                " of its due time",
                row["task_name"],
                row["job_id"],
                after_seconds,
                extra={"job_id": row["job_id"], "task_name": row["task_name"]},
            )
        return len(rows)

    async def prune_finished_jobs(self, older_than_seconds: float, limit: int) -> int:
        return _row_count(
            await self._db.execute(self.q.prune_finished_jobs, older_than_seconds, limit)
        )


def _log_fields(row: asyncpg.Record) -> dict[str, Any]:
    """A swept attempt's facts as log record attributes, as the runner gives them."""
    return {"job_id": row["job_id"], "task_name": row["task_name"], "attempt": row["attempts"]}


def _conflict_error(job_ids: Sequence[str], conflict: ConflictResolution) -> JobConflictError:
    first = job_ids[0]
    more = f" (and {len(job_ids) - 1} more)" if len(job_ids) > 1 else ""
    if conflict is ConflictResolution.REPLACE:
        return JobIsRunningError(
            f"job {first!r}{more} is running, so nothing was replaced; cancel it first"
            " (cancel_job) or schedule under another id",
            first,
        )
    return JobAlreadyExistsError(
        f"a job with id {first!r}{more} already exists; pass"
        " conflict_resolution=ConflictResolution.IGNORE to keep it or REPLACE to"
        " overwrite it",
        first,
    )


def _successes(successes: Sequence[Success]) -> list[list[Any]]:
    """The claims' success columns ($6..$9): job ids, owners, attempts, results."""
    return [
        [success.job_id for success in successes],
        [success.owner for success in successes],
        [success.attempt for success in successes],
        [success.result_json for success in successes],
    ]


def _attempt_end_columns(ends: Sequence[AttemptEnd]) -> list[list[Any]]:
    """The parameters of end_attempts(): one array per field, one element per attempt."""
    return _columns(
        [
            (
                end.lease.job_id,
                end.lease.owner,
                end.lease.attempt,
                end.outcome.value,
                end.result_json,
                end.error,
                None if end.parts is None else end.parts.type,
                None if end.parts is None else end.parts.message,
                end.delay,
            )
            for end in ends
        ]
    )


def _unique_violation_error(job: NewJob, exc: asyncpg.UniqueViolationError) -> JobConflictError:
    if getattr(exc, "constraint_name", None) == "jobs_unique_key_idx":
        return UniqueKeyConflictError(
            f"another unfinished job holds unique_key {job.unique_key!r}, so job"
            f" {job.job_id!r} was not replaced; cancel that job first or use another key",
            job.job_id,
        )
    return JobAlreadyExistsError(
        f"a job with id {job.job_id!r} already exists and does not hold unique_key"
        f" {job.unique_key!r}; REPLACE with a unique key replaces the job holding the key, so"
        " schedule it under another job_id (or none)",
        job.job_id,
    )


def _limit_values(limits: Limits) -> tuple[int | None, int | None, float, int]:
    return (limits.concurrency_limit, limits.rate_limit, limits.rate_period, limits.rate_burst)


def _all_limits(row: asyncpg.Record) -> tuple[Limit, ...]:
    return tuple(
        limit_from_row(item["kind"], item["settings"]) for item in json.loads(row["limits"] or "[]")
    )


def _row_count(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 1" or "DELETE 12".
    return int(status.rsplit(" ", 1)[-1])


def _one_row(status: str) -> bool:
    return _row_count(status) == 1


def _job_from_row(row: asyncpg.Record) -> Job:
    args, kwargs = decode_arguments(row["args"], row["kwargs"])
    return Job(
        job_id=row["job_id"],
        task_name=row["task_name"],
        args=args,
        kwargs=kwargs,
        status=JobStatus(row["status"]),
        priority=JobPriority(row["priority"]),
        execution_time=row["execution_time"],
        attempts=row["attempts"],
        failures=row["failures"],
        lost_leases=row["lost_leases"],
        max_retries=row["max_retries"],
        timeout=row["timeout_seconds"],
        last_error=row["last_error"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        lease_owner=row["lease_owner"],
        cancel_requested=row["cancel_requested_at"] is not None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        schedule_id=row["schedule_id"],
        fire_time=row["fire_time"],
        result=None if row["result"] is None else load_json(row["result"]),
        depends_on=tuple(row["depends_on"]),
        queue=row["queue"],
        lock_key=row["lock_key"],
        unique_key=row["unique_key"],
    )


def _job_row(job: NewJob) -> tuple[Any, ...]:
    """A new job's values in the order of the insert statements' parameters."""
    return (
        job.job_id,
        job.task_name,
        job.args_json,
        job.kwargs_json,
        job.priority,
        job.execution_time,
        job.delay_seconds,
        job.max_retries,
        job.timeout,
        job.queue,
        job.lock_key,
        job.unique_key,
        job.trace_context,
    )


def _copy_record(job: NewJob, now: datetime | None) -> tuple[Any, ...]:
    """A new job's values in the order of COPY_COLUMNS. Without an execution_time the job
    is due at the database's `now` plus its delay (make_interval() rounds the seconds to
    microseconds half to even, as round() does); with no `now` the column is left out."""
    execution_time = job.execution_time
    if execution_time is None and now is not None:
        micros = round((job.delay_seconds or 0.0) * 1_000_000)
        execution_time = now + timedelta(microseconds=micros)
    return (
        job.job_id,
        job.task_name,
        job.args_json,
        job.kwargs_json,
        job.priority,
        job.max_retries,
        job.timeout,
        job.queue,
        job.lock_key,
        job.unique_key,
        job.trace_context,
        execution_time,
    )


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest(...)` statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _stored_due_schedule(row: asyncpg.Record) -> StoredDueSchedule:
    return StoredDueSchedule(
        schedule_id=row["schedule_id"],
        trigger=row["trigger"],
        next_fire_time=row["next_fire_time"],
        coalesce=row["coalesce_policy"],
        misfire_grace_time=row["misfire_grace_seconds"],
        max_running=row["max_running"],
        unfinished_jobs=row["unfinished_jobs"],
        jitter=row["jitter_seconds"],
    )


def _schedule_from_row(row: asyncpg.Record) -> Schedule:
    args, kwargs = decode_arguments(row["args"], row["kwargs"])
    return Schedule(
        schedule_id=row["schedule_id"],
        task_name=row["task_name"],
        trigger=_stored_trigger(row["trigger"]),
        args=args,
        kwargs=kwargs,
        priority=JobPriority(row["priority"]),
        max_retries=row["max_retries"],
        timeout=row["timeout_seconds"],
        coalesce=CoalescePolicy(row["coalesce_policy"]),
        misfire_grace_time=row["misfire_grace_seconds"],
        max_running=row["max_running"],
        jitter=row["jitter_seconds"],
        paused=row["paused"],
        queue=row["queue"],
        next_fire_time=row["next_fire_time"],
        last_fire_time=row["last_fire_time"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        error=row["trigger_error"],
    )


def _stored_trigger(text: str) -> Trigger:
    """The trigger of a schedule row for inspection; one that cannot be rebuilt (the row
    may have been written by plain SQL) is shown as an `UnreadableTrigger`."""
    data = load_json(text)
    try:
        return trigger_from_json(data)
    except Exception as exc:  # any shape a hand-written row may have
        return UnreadableTrigger(data, f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _dependency_errors() -> Iterator[None]:
    """The SQL function's refusals as typed errors (the transaction rolls back)."""
    try:
        yield
    except asyncpg.NoDataFoundError as exc:
        raise UnknownDependencyError(str(exc)) from None
    except (asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.InvalidParameterValueError) as exc:
        raise InvalidJobError(str(exc)) from None


@contextlib.contextmanager
def _schema_guard(schema: str) -> Iterator[None]:
    """Turn 'relation does not exist' into an error that says to run migrations."""
    try:
        yield
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as exc:
        raise SchemaNotReadyError(
            f"the scheduler tables in schema {schema!r} do not exist: call"
            " `await scheduler.start()` (it migrates by default) or run `scheduler migrate`"
        ) from exc
