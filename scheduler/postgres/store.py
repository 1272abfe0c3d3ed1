"""The PostgreSQL implementation of the storage port, on an asyncpg pool."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from scheduler.errors import (
    JobAlreadyExistsError,
    JobConflictError,
    JobIsRunningError,
    SchemaNotReadyError,
)
from scheduler.models import ConflictResolution, Job, JobPriority, JobStatus
from scheduler.postgres.batching import CompletionBatcher
from scheduler.postgres.connection import AnyConnection
from scheduler.postgres.sql import Queries
from scheduler.serialization import decode_arguments
from scheduler.store import ClaimedJob, HeartbeatResult, Lease, NewJob

logger = logging.getLogger("scheduler.store")

#: Claim order: highest priority first. The claim query scans one priority at a time.
PRIORITIES_DESCENDING = sorted((p.value for p in JobPriority), reverse=True)

Executor: TypeAlias = "asyncpg.Pool[Any] | AnyConnection"


class PostgresJobStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.q = Queries(schema)
        self._completions = CompletionBatcher(self._complete_jobs)

    # -- producers --------------------------------------------------------------------
    async def insert_jobs(
        self,
        jobs: Sequence[NewJob],
        conflict: ConflictResolution,
        connection: AnyConnection | None = None,
    ) -> list[str]:
        replace = conflict is ConflictResolution.REPLACE
        if len(jobs) == 1:  # one row in one statement: atomic without a transaction
            [job] = jobs
            row = (
                job.job_id,
                job.task_name,
                job.args_json,
                job.kwargs_json,
                job.priority,
                job.execution_time,
                job.delay_seconds,
                job.max_retries,
                job.timeout,
            )
            executor: Executor = connection if connection is not None else self.pool
            with _schema_guard(self.schema):
                written = await executor.fetchval(
                    self.q.upsert_job if replace else self.q.insert_job, *row
                )
            if written is None and conflict is not ConflictResolution.IGNORE:
                raise _conflict_error([job.job_id], conflict)
            return [job.job_id]
        query = self.q.upsert_jobs if replace else self.q.insert_jobs
        columns = (
            [j.job_id for j in jobs],
            [j.task_name for j in jobs],
            [j.args_json for j in jobs],
            [j.kwargs_json for j in jobs],
            [j.priority for j in jobs],
            [j.execution_time for j in jobs],
            [j.delay_seconds for j in jobs],
            [j.max_retries for j in jobs],
            [j.timeout for j in jobs],
        )

        with _schema_guard(self.schema):
            async with contextlib.AsyncExitStack() as stack:
                conn: AnyConnection = (
                    connection
                    if connection is not None
                    else await stack.enter_async_context(self.pool.acquire())
                )
                # A savepoint inside the caller's transaction: raising rolls the batch back.
                async with conn.transaction():
                    written = {row["job_id"] for row in await conn.fetch(query, *columns)}
                    refused = [j.job_id for j in jobs if j.job_id not in written]
                    if refused and conflict is not ConflictResolution.IGNORE:
                        raise _conflict_error(refused, conflict)
        return [j.job_id for j in jobs]

    async def cancel_job(self, job_id: str) -> JobStatus | None:
        with _schema_guard(self.schema):
            previous = await self.pool.fetchval(self.q.cancel_job, job_id)
        return None if previous is None else JobStatus(previous)

    async def get_job(self, job_id: str) -> Job | None:
        with _schema_guard(self.schema):
            row = await self.pool.fetchrow(self.q.get_job, job_id)
        return None if row is None else _job_from_row(row)

    async def job_status(self, job_id: str) -> JobStatus | None:
        with _schema_guard(self.schema):
            status = await self.pool.fetchval(self.q.job_status, job_id)
        return None if status is None else JobStatus(status)

    # -- dispatcher -------------------------------------------------------------------
    async def claim_jobs(
        self, owner: UUID, task_names: Sequence[str], limit: int
    ) -> list[ClaimedJob]:
        rows = await self.pool.fetch(
            self.q.claim_jobs, owner, list(task_names), PRIORITIES_DESCENDING, limit
        )
        return [
            ClaimedJob(
                lease=Lease(row["job_id"], owner, row["attempts"]),
                task_name=row["task_name"],
                args_json=row["args"],
                kwargs_json=row["kwargs"],
                max_retries=row["max_retries"],
                timeout=row["timeout_seconds"],
            )
            for row in rows
        ]

    async def next_due_delay(self, task_names: Sequence[str]) -> float | None:
        delay: float | None = await self.pool.fetchval(
            self.q.next_due_delay, list(task_names), PRIORITIES_DESCENDING
        )
        return delay

    # -- one attempt's outcome --------------------------------------------------------
    async def complete_job(self, lease: Lease) -> bool:
        return await self._completions.complete(lease)

    async def _complete_jobs(self, leases: Sequence[Lease]) -> set[str]:
        rows = await self.pool.fetch(
            self.q.complete_jobs,
            [lease.job_id for lease in leases],
            [lease.owner for lease in leases],
            [lease.attempt for lease in leases],
        )
        return {row["job_id"] for row in rows}

    async def fail_job(self, lease: Lease, error: str, retry_delay: float) -> JobStatus | None:
        status = await self.pool.fetchval(
            self.q.fail_job, lease.job_id, lease.owner, lease.attempt, error, retry_delay
        )
        return None if status is None else JobStatus(status)

    async def cancel_running_job(self, lease: Lease, reason: str) -> bool:
        return _one_row(
            await self.pool.execute(
                self.q.cancel_running_job, lease.job_id, lease.owner, lease.attempt, reason
            )
        )

    async def release_job(self, lease: Lease, reason: str) -> bool:
        return _one_row(
            await self.pool.execute(
                self.q.release_job, lease.job_id, lease.owner, lease.attempt, reason
            )
        )

    # -- worker leases ----------------------------------------------------------------
    async def register_worker(
        self, owner: UUID, hostname: str, pid: int, tasks: Sequence[str], lease_time: float
    ) -> None:
        with _schema_guard(self.schema):
            await self.pool.execute(
                self.q.register_worker, owner, hostname, pid, list(tasks), lease_time
            )

    async def heartbeat(
        self, owner: UUID, tasks: Sequence[str], lease_time: float
    ) -> HeartbeatResult:
        row = await self.pool.fetchrow(self.q.heartbeat, owner, lease_time, list(tasks))
        assert row is not None  # the statement always returns one row
        return HeartbeatResult(
            alive=row["alive"],
            owned=frozenset(row["owned"]),
            cancel_requested=frozenset(row["cancel_requested"]),
        )

    async def unregister_worker(self, owner: UUID) -> None:
        await self.pool.execute(self.q.unregister_worker, owner)

    # -- maintenance ------------------------------------------------------------------
    async def reap_orphans(self, limit: int, orphan_retries: int) -> int:
        rows = await self.pool.fetch(self.q.reap_orphans, limit, orphan_retries)
        for row in rows:
            logger.warning("job %s lost its lease; now %s", row["job_id"], row["status"])
        return len(rows)

    async def delete_dead_workers(self) -> int:
        return _row_count(await self.pool.execute(self.q.delete_dead_workers))

    async def fail_unrunnable_jobs(self, after_seconds: float, limit: int) -> int:
        rows = await self.pool.fetch(self.q.fail_unrunnable_jobs, after_seconds, limit)
        for row in rows:
            logger.error("job %s failed: no live worker registered its task", row["job_id"])
        return len(rows)

    async def prune_finished_jobs(self, older_than_seconds: float, limit: int) -> int:
        return _row_count(
            await self.pool.execute(self.q.prune_finished_jobs, older_than_seconds, limit)
        )


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
        max_retries=row["max_retries"],
        timeout=row["timeout_seconds"],
        last_error=row["last_error"],
        lease_owner=row["lease_owner"],
        cancel_requested=row["cancel_requested_at"] is not None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


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
