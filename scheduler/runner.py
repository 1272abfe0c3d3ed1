"""Runs one claimed attempt and records its outcome.

The attempt runs inside its own cancel scope, so a cancel request, a shutdown or a lost
lease can interrupt it. It starts only while this replica still holds the lease it was
claimed under. Its outcome is then written shielded from cancellation, fenced by the lease,
retried only on transient errors and never past the attempt's fence deadline: a write that
cannot land in time is left to the heartbeat, which hands the attempt back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg

from scheduler.context import JobContext, Snooze, set_current_job
from scheduler.error_text import describe_exception, storable_text
from scheduler.errors import JobInterruptedError
from scheduler.executors.process import ProcessPool
from scheduler.retry import RetryBackoff
from scheduler.running import CancelReason, RunningJob, RunningJobs, WorkerIdentity
from scheduler.serialization import DEFAULT_MAX_PAYLOAD_BYTES, decode_arguments, encode_result
from scheduler.store import JobStore, Success
from scheduler.tasks import TaskDefinition

logger = logging.getLogger("scheduler.runner")

#: Errors worth retrying a write for: the connection or the server's state, not the
#: statement, went wrong. Anything else would fail again the same way.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes TimeoutError and ConnectionError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.QueryCanceledError,
    # A connection the server terminated mid-operation can come back from the pool in a
    # corrupted state (asyncpg issue 1069): a connection fault like the others.
    asyncpg.InternalClientError,
)


@dataclass(frozen=True)
class Succeeded:
    result_json: str | None = None


@dataclass(frozen=True)
class Failed:
    error: str
    timed_out: bool = False


@dataclass(frozen=True)
class Interrupted:
    reason: CancelReason


@dataclass(frozen=True)
class Snoozed:
    delay: float


Outcome = Succeeded | Failed | Interrupted | Snoozed


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        running: RunningJobs,
        identity: WorkerIdentity,
        find_task: Callable[[str], TaskDefinition],
        default_backoff: RetryBackoff,
        threads: Executor,
        fence_deadline: Callable[[], float],
        max_result_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        processes: ProcessPool | None = None,
    ) -> None:
        self._store = store
        self._running = running
        self._identity = identity
        self._find_task = find_task
        self._default_backoff = default_backoff
        self._threads = threads
        self._fence_deadline = fence_deadline
        self._max_result_bytes = max_result_bytes
        self._processes = processes
        self._abandoned = False
        self._thread_waits: set[anyio.Event] = set()

    def abandon(self) -> None:
        """Shutdown gave up on the attempts still here (a thread or a coroutine that does not
        stop): stop waiting for them and write nothing more for them. Their leases lapse
        with this replica's, and the orphan sweep hands them on."""
        self._abandoned = True
        for waiting in self._thread_waits:
            waiting.set()

    async def run(self, entry: RunningJob) -> None:
        """Execute, free the slot, record. Never raises (a bug is logged, the attempt is left
        to the heartbeat's reconciliation).

        The slot is free as soon as the job's code returns, so the next claim overlaps
        this write (and completions batch); the entry stays until the write is done, so
        shutdown still waits for every outcome and the heartbeat knows it is ours.
        """
        try:
            outcome, backoff = await self._execute(entry)
            self._running.finish_execution(entry)
            if not self._abandoned:
                with anyio.CancelScope(shield=True):
                    await self._record(entry, outcome, backoff)
        except Exception:
            logger.exception("job %s attempt %d: unexpected error", *entry.key)
        finally:
            self._running.remove(entry)

    async def _execute(self, entry: RunningJob) -> tuple[Outcome, RetryBackoff | None]:
        claimed = entry.claimed
        try:
            definition = self._find_task(claimed.task_name)
            args, kwargs = decode_arguments(claimed.args_json, claimed.kwargs_json)
        except Exception as exc:  # unregistered meanwhile, or a row written by hand
            return Failed(storable_text(f"could not start: {exc!r}")), None
        backoff = definition.backoff or self._default_backoff
        timeout = claimed.timeout
        # Each runner is its own task, so this context variable is private to the job.
        set_current_job(
            JobContext(
                claimed.lease.job_id,
                claimed.task_name,
                claimed.lease.attempt,
                claimed.lease.owner,
                entry.stop,
            )
        )
        timing = anyio.CancelScope()
        try:
            with entry.scope:
                # Claimed a moment early: start at its due time, not before.
                wait = entry.start_at - anyio.current_time()
                if wait > 0:
                    await anyio.sleep(wait)
                if not self._identity.holds(entry.owner):
                    # Fenced since the claim: a peer may already run it. Never start.
                    entry.cancel(CancelReason.LEASE_LOST)
                    return Interrupted(CancelReason.LEASE_LOST), backoff
                timing.deadline = anyio.current_time() + timeout if timeout else math.inf
                with timing:
                    value = await self._call(entry, definition, args, kwargs)
                    return self._succeeded(value), backoff
                # Only reached when the deadline scope swallowed its own cancellation.
                return Failed(f"timed out after {timeout} seconds", timed_out=True), backoff
            # Only reached when the job's scope swallowed its cancellation.
            return Interrupted(entry.reason or CancelReason.SHUTDOWN), backoff
        except Snooze as snooze:
            return Snoozed(snooze.delay), backoff
        except JobInterruptedError:
            # The job noticed a stop request itself (raise_if_cancelled): what stopped it.
            if entry.reason is not None:
                return Interrupted(entry.reason), backoff
            return Failed(f"timed out after {timeout} seconds", timed_out=True), backoff
        except Exception as exc:
            return Failed(describe_exception(exc)), backoff
        except BaseException as exc:
            if self._abandoned:
                raise  # shutdown gave up on this attempt: nothing more is written
            # Runner tasks are never cancelled from outside (only through their scopes):
            # CancelledError, KeyboardInterrupt, SystemExit... escaping here came from the
            # job itself. That is the job failing, not the scheduler stopping.
            return Failed(describe_exception(exc)), backoff

    def _succeeded(self, value: Any) -> Outcome:
        """A result that cannot be stored fails the attempt (a bug in the job: it spends a
        retry like any other failure), with the reason as its error."""
        try:
            return Succeeded(encode_result(value, max_bytes=self._max_result_bytes))
        except ValueError as exc:
            return Failed(f"the job returned a value that cannot be stored: {exc}")

    async def _call(
        self,
        entry: RunningJob,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if definition.executor == "process" and self._processes is not None:
            # Cancelled (timeout, cancel, shutdown): the pool kills the child and re-raises.
            return await self._processes.run(entry, definition, args, kwargs)
        if definition.is_async:
            return await definition.func(*args, **kwargs)
        # A thread cannot be interrupted: on cancellation it is asked to stop (through
        # current_job()) and waited for, and its real outcome stands, never "cancelled"
        # for work that quietly completed.
        call = functools.partial(contextvars.copy_context().run, definition.func, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self._threads, call)
        finished = anyio.Event()
        future.add_done_callback(lambda _: finished.set())
        try:
            await finished.wait()
        except anyio.get_cancelled_exc_class():
            entry.stop.request(entry.reason.value if entry.reason else "timed out")
            self._thread_waits.add(finished)
            try:
                with anyio.CancelScope(shield=True):
                    await finished.wait()
            finally:
                self._thread_waits.discard(finished)
            if not future.done() or isinstance(future.exception(), JobInterruptedError):
                raise  # abandoned, or it stopped as asked: cancelled, not failed
        return future.result()  # its return value, or its exception

    async def _record(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> None:
        lease = entry.claimed.lease
        if isinstance(outcome, Interrupted) and outcome.reason is CancelReason.LEASE_LOST:
            logger.warning("job %s attempt %d abandoned: lease lost", lease.job_id, lease.attempt)
            return
        deadline = self._fence_deadline()
        delay = 0.05
        while True:
            if entry.reason is CancelReason.LEASE_LOST or not self._identity.holds(lease.owner):
                logger.warning(
                    "job %s attempt %d: lease lost before its outcome (%s) was written;"
                    " the orphan sweep will hand it to a peer",
                    lease.job_id,
                    lease.attempt,
                    type(outcome).__name__,
                )
                return
            remaining = deadline - anyio.current_time()
            failure: BaseException | None = None
            with anyio.move_on_after(remaining) as writing:
                try:
                    written = await self._write(entry, outcome, backoff)
                except Exception as exc:
                    failure = exc
            if writing.cancelled_caught or remaining <= 0:
                logger.warning(
                    "job %s attempt %d: outcome (%s) not written before the lease's fence"
                    " deadline; the heartbeat hands the attempt back",
                    lease.job_id,
                    lease.attempt,
                    type(outcome).__name__,
                )
                return
            if failure is None:
                if not written:
                    logger.warning(
                        "job %s attempt %d: outcome %s discarded, the lease is held elsewhere",
                        lease.job_id,
                        lease.attempt,
                        type(outcome).__name__,
                    )
                return
            if isinstance(failure, TRANSIENT_ERRORS):
                logger.warning("recording job %s failed (%r); retrying", lease.job_id, failure)
                await anyio.sleep(min(delay, max(deadline - anyio.current_time(), 0)))
                delay = min(delay * 2, 2.0)
                continue
            if isinstance(outcome, Failed) and outcome.error != _UNWRITABLE:
                # The statement itself was refused: try once more with a plain message.
                logger.error(
                    "recording job %s failed (%r); storing a plain error instead",
                    lease.job_id,
                    failure,
                )
                outcome = Failed(_UNWRITABLE, timed_out=outcome.timed_out)
                continue
            logger.error(
                "recording job %s attempt %d failed (%r); the heartbeat hands it back",
                lease.job_id,
                lease.attempt,
                failure,
            )
            return

    async def _write(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> bool:
        lease = entry.claimed.lease
        if isinstance(outcome, Succeeded):
            success = Success(lease.job_id, lease.owner, lease.attempt, outcome.result_json)
            return await self._store.complete_job(success)
        if isinstance(outcome, Failed):
            # Backoff grows with failures only: lost leases and releases do not count.
            failure = entry.claimed.failures + 1
            retry_delay = (backoff or self._default_backoff).delay(failure)
            status = await self._store.fail_job(
                lease, outcome.error, retry_delay, timed_out=outcome.timed_out
            )
            if status is not None:
                logger.info(
                    "job %s attempt %d failed; now %s", lease.job_id, lease.attempt, status.value
                )
            return status is not None
        if isinstance(outcome, Snoozed):
            snoozed = await self._store.snooze_job(lease, outcome.delay)
            return snoozed is not None
        if outcome.reason is CancelReason.REQUESTED:
            return await self._store.cancel_running_job(lease, outcome.reason.value)
        return await self._store.release_job(lease, outcome.reason.value)


#: Stored when the real error text could not be written.
_UNWRITABLE = "the job failed, but its error could not be stored (see the worker's log)"
