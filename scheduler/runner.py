"""Runs one claimed job and records its outcome.

The attempt runs inside its own cancel scope, so a cancel request, a shutdown or a lost
lease can interrupt it; the outcome is then written shielded from cancellation, fenced by
the lease, and retried on connection errors for as long as this replica holds the lease.
"""

from __future__ import annotations

import functools
import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg

from scheduler.context import JobContext, set_current_job
from scheduler.retry import RetryBackoff
from scheduler.running import CancelReason, RunningJob, RunningJobs, WorkerIdentity
from scheduler.serialization import decode_arguments
from scheduler.store import JobStore
from scheduler.tasks import TaskDefinition

logger = logging.getLogger("scheduler.runner")

#: Errors worth retrying a write for: the connection, not the statement, went wrong.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A connection the server terminated mid-operation can come back from the pool in a
    # corrupted state (asyncpg issue 1069): a connection fault like the others.
    asyncpg.InternalClientError,
)
MAX_ERROR_LENGTH = 4000


@dataclass(frozen=True)
class Succeeded:
    pass


@dataclass(frozen=True)
class Failed:
    error: str


@dataclass(frozen=True)
class Interrupted:
    reason: CancelReason


Outcome = Succeeded | Failed | Interrupted


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        running: RunningJobs,
        identity: WorkerIdentity,
        find_task: Callable[[str], TaskDefinition],
        default_backoff: RetryBackoff,
        thread_limiter: anyio.CapacityLimiter,
        host_scope: Callable[[], anyio.CancelScope | None],
    ) -> None:
        self._store = store
        self._running = running
        self._identity = identity
        self._find_task = find_task
        self._default_backoff = default_backoff
        self._thread_limiter = thread_limiter
        self._host_scope = host_scope

    async def run(self, entry: RunningJob) -> None:
        """Execute, free the slot, record. Never raises, except to propagate a cancellation
        of the whole scheduler (after the outcome has been recorded).

        The slot is free as soon as the job's code returns, so the next claim overlaps
        this write (and completions batch): a commit's latency no longer idles a slot. The
        task lives until the write is done, so shutdown still waits for every outcome.
        """
        try:
            outcome, backoff = await self._execute(entry)
        except anyio.get_cancelled_exc_class():
            # The whole scheduler is being torn down: give the job back, then propagate.
            with anyio.CancelScope(shield=True):
                await self._record(entry, Interrupted(CancelReason.SHUTDOWN), None)
                self._running.remove(entry)
            raise
        self._running.remove(entry)
        with anyio.CancelScope(shield=True):
            await self._record(entry, outcome, backoff)

    async def _execute(self, entry: RunningJob) -> tuple[Outcome, RetryBackoff | None]:
        claimed = entry.claimed
        try:
            definition = self._find_task(claimed.task_name)
            args, kwargs = decode_arguments(claimed.args_json, claimed.kwargs_json)
        except Exception as exc:  # unregistered meanwhile, or a row written by hand
            return Failed(f"could not start: {exc}"), None
        backoff = definition.backoff or self._default_backoff
        timeout = claimed.timeout
        # Each runner is its own task, so this context variable is private to the job.
        set_current_job(
            JobContext(
                claimed.lease.job_id, claimed.task_name, claimed.lease.attempt, claimed.lease.owner
            )
        )
        try:
            with entry.scope:
                # Claimed a moment early: start at its due time, not before.
                wait = entry.start_at - anyio.current_time()
                if wait > 0:
                    await anyio.sleep(wait)
                deadline = anyio.current_time() + timeout if timeout else math.inf
                with anyio.CancelScope(deadline=deadline):
                    await self._call(definition, args, kwargs)
                    return Succeeded(), backoff
                # Only reached when the deadline scope swallowed its own cancellation.
                return Failed(f"timed out after {timeout} seconds"), backoff
            # Only reached when the job's scope swallowed its cancellation.
            return Interrupted(entry.reason or CancelReason.SHUTDOWN), backoff
        except Exception:
            return Failed(_format_error()), backoff
        except BaseException as exc:
            host = self._host_scope()
            if isinstance(exc, anyio.get_cancelled_exc_class()) and (
                host is None or host.cancel_called
            ):
                raise  # the scheduler itself is being cancelled
            # The job raised CancelledError, KeyboardInterrupt, SystemExit... itself: that
            # is the job failing, not the scheduler stopping.
            return Failed(_format_error()), backoff

    async def _call(
        self, definition: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if definition.is_async:
            await definition.func(*args, **kwargs)
        else:
            # A thread cannot be interrupted: cancellation waits for it, and the real
            # outcome is recorded (never "cancelled" for work that quietly completed).
            await anyio.to_thread.run_sync(
                functools.partial(definition.func, *args, **kwargs),
                abandon_on_cancel=False,
                limiter=self._thread_limiter,
            )

    async def _record(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> None:
        lease = entry.claimed.lease
        if isinstance(outcome, Interrupted) and outcome.reason is CancelReason.LEASE_LOST:
            logger.warning("job %s attempt %d abandoned: lease lost", lease.job_id, lease.attempt)
            return
        delay = 0.1
        while True:
            if entry.reason is CancelReason.LEASE_LOST or self._identity.current != lease.owner:
                logger.warning(
                    "job %s attempt %d: lease lost before its outcome (%s) was written;"
                    " the orphan sweep will hand it to a peer",
                    lease.job_id,
                    lease.attempt,
                    outcome,
                )
                return
            try:
                written = await self._write(entry, outcome, backoff)
            except Exception as exc:
                # Writes are fenced, so retrying is always safe; nothing may escape here,
                # or one bad write would stop the whole scheduler. Connection faults are
                # expected (warning); anything else is a bug worth an error in the log.
                log = logger.warning if isinstance(exc, TRANSIENT_ERRORS) else logger.error
                log("recording job %s failed (%r); retrying", lease.job_id, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if not written:
                logger.warning(
                    "job %s attempt %d: outcome %s discarded, the lease is held elsewhere",
                    lease.job_id,
                    lease.attempt,
                    outcome,
                )
            return

    async def _write(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> bool:
        lease = entry.claimed.lease
        if isinstance(outcome, Succeeded):
            return await self._store.complete_job(lease)
        if isinstance(outcome, Failed):
            retry_delay = (backoff or self._default_backoff).delay(lease.attempt)
            status = await self._store.fail_job(
                lease, outcome.error[:MAX_ERROR_LENGTH], retry_delay
            )
            if status is not None:
                logger.info(
                    "job %s attempt %d failed; now %s", lease.job_id, lease.attempt, status.value
                )
            return status is not None
        if outcome.reason is CancelReason.REQUESTED:
            return await self._store.cancel_running_job(lease, outcome.reason.value)
        return await self._store.release_job(lease, outcome.reason.value)


def _format_error() -> str:
    return traceback.format_exc(limit=20).strip()
