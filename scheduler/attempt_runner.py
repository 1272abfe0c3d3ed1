"""Runs one claimed attempt and records its outcome.

The attempt runs in its own asyncio task, which a cancel request, a timeout, a shutdown or
a lost lease interrupts while (and only while) the job's code runs. It starts only while
this replica still holds the lease it was claimed under. Its outcome is then written,
never interrupted by those, fenced by the lease,
retried only on transient errors and never past the attempt's fence deadline: a write that
cannot land in time is left to the heartbeat, which hands the attempt back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from time import monotonic
from typing import Any

import asyncpg

from scheduler.context import JobContext, Snooze, set_current_job
from scheduler.error_text import ErrorParts, describe_exception, exception_parts, storable_text
from scheduler.errors import JobInterruptedError
from scheduler.executors.process import ProcessJobError, ProcessPool
from scheduler.interrupt import MoveOnAt, uncancel
from scheduler.models import JobStatus
from scheduler.observing import Observability
from scheduler.outcomes import CancelReason, Failed, Interrupted, Outcome, Snoozed, Succeeded
from scheduler.retry_backoff import RetryBackoff
from scheduler.running_jobs import RunningJob, RunningJobs, WorkerIdentity
from scheduler.serialization import DEFAULT_MAX_PAYLOAD_BYTES, decode_arguments, encode_result
from scheduler.store import JobStore, Success
from scheduler.task_definition import TaskDefinition

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


def failed_with(exc: BaseException, prefix: str = "") -> Failed:
    """The failure of an attempt that raised `exc`. A process job's error is the one its
    child raised (the pool's ProcessJobError carries its type and message)."""
    parts = getattr(exc, "parts", None) if isinstance(exc, ProcessJobError) else None
    text = describe_exception(exc)
    if prefix:
        text = storable_text(f"{prefix}{text}")
    return Failed(text, parts=parts or exception_parts(exc), exception=exc)


_NO_RESULT = Succeeded("null")  # most jobs return None: nothing to encode


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
        observability: Observability | None = None,
        processes: ProcessPool | None = None,
        *,
        record_success: Callable[[Success], Awaitable[bool]],
    ) -> None:
        self._store = store
        # Successes go through the completion batcher: fenced, True when written.
        self._record_success = record_success
        self._running = running
        self._identity = identity
        self._find_task = find_task
        self._default_backoff = default_backoff
        self._threads = threads
        self._fence_deadline = fence_deadline
        self._max_result_bytes = max_result_bytes
        self._processes = processes
        self._abandoned = False
        # Middleware and events: None when nothing is configured, so a job pays one `if`.
        self._observability = observability or Observability()
        self._observe = self._observability if self._observability.active else None

    def abandon(self) -> None:
        """Shutdown gave up on the attempts still here (a thread or a coroutine that does not
        stop): write nothing more for them; shutdown cancels their tasks. Their leases lapse
        with this replica's, and the orphan sweep hands them on."""
        self._abandoned = True

    async def run(self, entry: RunningJob) -> None:
        """Execute, free the slot, record. Never raises (a bug is logged, the attempt is left
        to the heartbeat's reconciliation).

        The slot is free as soon as the job's code returns, so the next claim overlaps
        this write (and completions batch); the entry stays until the write is done, so
        shutdown still waits for every outcome and the heartbeat knows it is ours. Nothing
        cancels this task outside the job's code (see RunningJob.interrupt) except
        shutdown abandoning it, so the write needs no shield.
        """
        try:
            outcome, backoff = await self._execute(entry)
            self._running.finish_execution(entry)
            if not self._abandoned:
                written = await self._record(entry, outcome, backoff)
                if self._observe is not None:
                    self._observe.attempt_ended(entry, outcome, written)
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
            text = storable_text(f"could not start: {exc!r}")
            return Failed(text, parts=exception_parts(exc), exception=exc), None
        backoff = definition.backoff or self._default_backoff
        if entry.reason is not None:  # cancelled before this task first ran
            return Interrupted(entry.reason), backoff
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
        timeout = claimed.timeout
        timer: asyncio.TimerHandle | None = None
        entry.interruptible = True
        try:
            # Claimed a moment early: start at its due time, not before.
            wait = entry.start_at - monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._identity.holds(entry.owner):
                # Fenced since the claim: a peer may already run it. Never start. (Not
                # interruptible first: this task must not cancel itself.)
                entry.interruptible = False
                entry.cancel(CancelReason.LEASE_LOST)
                return Interrupted(CancelReason.LEASE_LOST), backoff
            if timeout:
                timer = asyncio.get_running_loop().call_later(timeout, entry.time_out)
            if self._observe is None and not definition.middleware:
                value = await self._call(entry, definition, args, kwargs)
            else:
                value = await self._observability.around(
                    self._call, entry, definition, args, kwargs
                )
            return self._succeeded(value), backoff
        except asyncio.CancelledError as exc:
            if self._abandoned:
                raise  # shutdown gave up on this attempt: nothing more is written
            if entry.reason is not None:
                return Interrupted(entry.reason), backoff
            if entry.timed_out:
                return _timed_out(timeout), backoff
            # Nobody here cancelled it: the job raised CancelledError itself (an inner task
            # it awaited was cancelled). That is the job failing, not the scheduler stopping.
            return failed_with(exc), backoff
        except Snooze as snooze:
            return Snoozed(snooze.delay), backoff
        except JobInterruptedError:
            # The job noticed a stop request itself (raise_if_cancelled): what stopped it.
            if entry.reason is not None:
                return Interrupted(entry.reason), backoff
            return _timed_out(timeout), backoff
        except Exception as exc:
            return failed_with(exc), backoff
        except BaseException as exc:
            if self._abandoned:
                raise
            # KeyboardInterrupt, SystemExit... raised by the job: the job failing.
            return failed_with(exc), backoff
        finally:
            entry.interruptible = False
            if timer is not None:
                timer.cancel()
            # Every cancel sent while interruptible was delivered inside the job (the task
            # was waiting there); forget them so the outcome write runs as if uncancelled.
            task = entry.task
            if entry.interruptions and task is not None:
                uncancel(task, entry.interruptions)
                entry.interruptions = 0

    def _succeeded(self, value: Any) -> Outcome:
        """A result that cannot be stored fails the attempt (a bug in the job: it spends a
        retry like any other failure), with the reason as its error."""
        if value is None:
            return _NO_RESULT
        try:
            return Succeeded(encode_result(value, max_bytes=self._max_result_bytes))
        except ValueError as exc:
            text = f"the job returned a value that cannot be stored: {exc}"
            return Failed(text, parts=ErrorParts(None, text), exception=exc)

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
        while True:
            try:
                return await asyncio.shield(future)  # its return value, or its exception
            except asyncio.CancelledError:
                if self._abandoned or future.cancelled():
                    raise
                if future.done():
                    return future.result()  # it finished as the cancel came
                entry.stop.request(entry.reason.value if entry.reason else "timed out")

    async def _record(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> bool:
        """Write the outcome; False when it was not written (the lease was lost, or the
        write gave up)."""
        lease = entry.claimed.lease
        task = entry.claimed.task_name
        if isinstance(outcome, Interrupted) and outcome.reason is CancelReason.LEASE_LOST:
            logger.warning(
                "job %s (task %s) attempt %d abandoned: its lease was lost; the orphan sweep"
                " hands it to a peer",
                lease.job_id,
                task,
                lease.attempt,
                extra=_log_fields(entry),
            )
            return False
        deadline = self._fence_deadline()
        delay = 0.05
        while True:
            if entry.reason is CancelReason.LEASE_LOST or not self._identity.holds(lease.owner):
                logger.warning(
                    "job %s (task %s) attempt %d: lease lost before its outcome (%s) was"
                    " written; the orphan sweep will hand it to a peer",
                    lease.job_id,
                    task,
                    lease.attempt,
                    _describe(outcome),
                    extra=_log_fields(entry),
                )
                return False
            failure: BaseException | None = None
            # The fence deadline is on the monotonic clock; the timer on the loop's.
            loop_deadline = asyncio.get_running_loop().time() + (deadline - monotonic())
            with MoveOnAt(loop_deadline) as writing:
                try:
                    written = await self._write(entry, outcome, backoff)
                except Exception as exc:
                    failure = exc
            if writing.expired:
                logger.warning(
                    "job %s (task %s) attempt %d: outcome (%s) not written before the"
                    " lease's fence deadline; the heartbeat hands the attempt back",
                    lease.job_id,
                    task,
                    lease.attempt,
                    _describe(outcome),
                    extra=_log_fields(entry),
                )
                return False
            if failure is None:
                if not written:
                    logger.warning(
                        "job %s (task %s) attempt %d: outcome (%s) discarded, the lease is"
                        " held elsewhere",
                        lease.job_id,
                        task,
                        lease.attempt,
                        _describe(outcome),
                        extra=_log_fields(entry),
                    )
                return written
            if isinstance(failure, TRANSIENT_ERRORS):
                logger.warning("recording job %s failed (%r); retrying", lease.job_id, failure)
                await asyncio.sleep(min(delay, max(deadline - monotonic(), 0)))
                delay = min(delay * 2, 2.0)
                continue
            if isinstance(outcome, Failed) and outcome.error != _UNWRITABLE:
                # The statement itself was refused: try once more with a plain message.
                logger.error(
                    "recording job %s failed (%r); storing a plain error instead",
                    lease.job_id,
                    failure,
                )
                outcome = Failed(
                    _UNWRITABLE,
                    timed_out=outcome.timed_out,
                    parts=outcome.parts,
                    exception=outcome.exception,
                )
                continue
            logger.error(
                "recording job %s attempt %d failed (%r); the heartbeat hands it back",
                lease.job_id,
                lease.attempt,
                failure,
            )
            return False

    async def _write(
        self, entry: RunningJob, outcome: Outcome, backoff: RetryBackoff | None
    ) -> bool:
        lease = entry.claimed.lease
        if isinstance(outcome, Succeeded):
            success = Success(lease.job_id, lease.owner, lease.attempt, outcome.result_json)
            return await self._record_success(success)
        retry_delay = 0.0
        if isinstance(outcome, Failed):
            # Backoff grows with failures only: lost leases and releases do not count.
            retry_delay = (backoff or self._default_backoff).delay(entry.claimed.failures + 1)
        ended = await self._store.end_attempts([outcome.ending(lease, retry_delay)])
        status = ended.get(lease.job_id)
        if status is not None and isinstance(outcome, Failed):
            _log_failure(entry, outcome, status, retry_delay)
        return status is not None


def _timed_out(timeout: float | None) -> Failed:
    text = f"timed out after {timeout} seconds"
    return Failed(text, timed_out=True, parts=ErrorParts(None, text))


def _log_failure(entry: RunningJob, outcome: Failed, status: JobStatus, delay: float) -> None:
    """A retried attempt at WARNING, a final failure at ERROR: task, job, attempt and the
    exception (type and message; its traceback through exc_info)."""
    lease = entry.claimed.lease
    claimed = entry.claimed
    what = "timed out" if outcome.timed_out else "failed"
    exc_info = outcome.exception if not outcome.timed_out else None
    if status is JobStatus.PENDING:
        logger.warning(
            "task %s job %s attempt %d %s: %s; retry %d of %d in %.3g s",
            claimed.task_name,
            lease.job_id,
            lease.attempt,
            what,
            outcome.summary,
            claimed.failures + 1,
            claimed.max_retries,
            delay,
            exc_info=exc_info,
            extra=_log_fields(entry, outcome),
        )
    else:
        logger.error(
            "task %s job %s attempt %d %s: %s; no retry left, the job is %s",
            claimed.task_name,
            lease.job_id,
            lease.attempt,
            what,
            outcome.summary,
            status.value,
            exc_info=exc_info,
            extra=_log_fields(entry, outcome),
        )


def _log_fields(entry: RunningJob, outcome: Failed | None = None) -> dict[str, Any]:
    """The same facts as log record attributes, for structured log handlers."""
    lease = entry.claimed.lease
    fields: dict[str, Any] = {
        "job_id": lease.job_id,
        "task_name": entry.claimed.task_name,
        "attempt": lease.attempt,
    }
    if outcome is not None and outcome.parts is not None:
        fields["error_type"] = outcome.parts.type
        fields["error_message"] = outcome.parts.message
    return fields


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, Failed):
        return f"failed: {outcome.summary}"
    if isinstance(outcome, Interrupted):
        return outcome.reason.value
    return type(outcome).__name__.lower()


#: Stored when the real error text could not be written.
_UNWRITABLE = "the job failed, but its error could not be stored (see the worker's log)"
