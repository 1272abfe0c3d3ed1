"""`wait_for_job()`: block until a job finishes and return it.

Woken by the 'finished <job id>' notification that a job sends when it finishes, if
somebody asked for it (`await_job` sets the job's `awaited` flag); a started scheduler
hears it on its listener, a producer that never started on one LISTEN connection all its
waits share, open while any wait is in progress. A poll every `poll_interval` is the
backstop for a notification lost with its connection. No wait holds a connection while
it waits, and its deadline covers waiting for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import anyio

from scheduler.errors import JobNotFoundError, JobWaitTimeoutError, PoolExhaustedError
from scheduler.models import Job, JobStatus
from scheduler.store import JobStore

T = TypeVar("T")

#: How often a waiter looks at the job even when no notification came.
WAIT_POLL_INTERVAL = 2.0
#: How long `timeout=0` (a look) may take to read the job, waiting for a pool connection
#: (or opening one) included: ample for a round trip on a busy pool or a first connection,
#: far shorter than the pool's 30 s acquire deadline.
LOOK_SECONDS = 5.0


class _Watch:
    def __init__(self) -> None:
        # asyncio's event: it is set from asyncpg's listener callback, outside any task.
        self.event = asyncio.Event()


class FinishedJobs:
    """The waits in progress in this process, by job id; `notify` wakes those of a job."""

    def __init__(self) -> None:
        self._watches: dict[str, set[_Watch]] = {}

    def notify(self, job_id: str) -> None:
        for watch in self._watches.get(job_id, ()):
            watch.event.set()

    def notify_all(self) -> None:
        """Notifications may have been lost (a listener reconnected): everyone looks."""
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[_Watch]:
        watch = _Watch()
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches[job_id]
            watches.discard(watch)
            if not watches:
                del self._watches[job_id]


async def wait_for_job(
    store: JobStore,
    finished: FinishedJobs,
    job_id: str,
    timeout: float | None,
    *,
    listening: bool,
    poll_interval: float = WAIT_POLL_INTERVAL,
) -> Job:
    """The deadline covers everything, waiting for a pool connection included: a wait
    holds no connection while it waits, and raises `JobWaitTimeoutError` on time whatever
    holds the pool."""
    if timeout == 0:  # a look, not a wait: the job if it has finished
        # Bounded apart from the pool's own acquire deadline: a look must not wait for
        # the pool to free a connection for as long as a wait could.
        with anyio.move_on_after(LOOK_SECONDS):
            job = await _patiently(store.get_job, job_id)
            if job is None:
                raise _not_found(job_id)
            if job.is_finished:
                return job
            raise _timed_out(job_id, timeout, job.status.value)
        raise JobWaitTimeoutError(
            f"job {job_id!r} is unread: no pool connection became free, or the database did"
            f" not answer, within {LOOK_SECONDS:g} seconds; look again later, or wait with a"
            " timeout",
            job_id,
        )
    seen: list[JobStatus] = []  # the last status read, if any was
    with anyio.move_on_after(math.inf if timeout is None else timeout):
        with finished.watch(job_id) as watch:
            async with contextlib.AsyncExitStack() as stack:
                if not listening:
                    await stack.enter_async_context(
                        store.finished_notifications(finished.notify, finished.notify_all)
                    )
                # Listening before the flag is set: a job finishing in between is not
                # missed (or, until the shared listener listens, the poll finds it).
                status = await _patiently(store.await_job, job_id)
                while True:
                    if status is None:
                        raise _not_found(job_id)
                    seen[:] = [status]
                    if status.is_terminal:
                        job = await _patiently(store.get_job, job_id)
                        if job is not None and job.is_finished:
                            return job
                        status = None if job is None else job.status
                        continue
                    with anyio.move_on_after(poll_interval):
                        await watch.event.wait()
                    watch.event.clear()  # before reading: a notification from now on counts
                    status = await _patiently(store.job_status, job_id)
    state = seen[0].value if seen else _UNREAD
    raise _timed_out(job_id, timeout, state)


_UNREAD = "unread (no pool connection became free to read it)"


def _not_found(job_id: str) -> JobNotFoundError:
    return JobNotFoundError(
        f"no job {job_id!r} (unknown, or pruned after the retention period)", job_id
    )


def _timed_out(job_id: str, timeout: float | None, state: str) -> JobWaitTimeoutError:
    return JobWaitTimeoutError(
        f"job {job_id!r} is still {state} after {timeout} seconds; wait longer, or cancel it"
        " (cancel_job)",
        job_id,
    )


async def _patiently(read: Callable[[str], Awaitable[T]], job_id: str) -> T:
    """`read(job_id)`, again while the pool has no connection to spare: the wait's own
    deadline, not the pool's, decides when to give up."""
    while True:
        try:
            return await read(job_id)
        except PoolExhaustedError:
            continue  # the acquire itself waited: this is no busy loop
