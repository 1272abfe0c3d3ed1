"""`wait_for_job()`: block until a job finishes and return it.

Woken by the 'finished <job id>' notification that a job sends when it finishes, if
somebody asked for it (`await_job` sets the job's `awaited` flag); a started scheduler
hears it on its listener, a producer that never started listens on a connection of its
own for the duration of the wait. A poll every `poll_interval` is the backstop for a
notification lost with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator

import anyio

from scheduler.errors import JobNotFoundError, JobWaitTimeoutError
from scheduler.models import Job
from scheduler.store import JobStore

#: How often a waiter looks at the job even when no notification came.
WAIT_POLL_INTERVAL = 2.0


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
    deadline = anyio.current_time() + (math.inf if timeout is None else timeout)
    with finished.watch(job_id) as watch:
        async with contextlib.AsyncExitStack() as stack:
            if not listening:
                await stack.enter_async_context(store.finished_notifications(finished.notify))
            # Listening before the flag is set: a job finishing in between is not missed.
            status = await store.await_job(job_id)
            while True:
                if status is None:
                    raise JobNotFoundError(
                        f"no job {job_id!r} (unknown, or pruned after the retention period)",
                        job_id,
                    )
                if status.is_terminal:
                    job = await store.get_job(job_id)
                    if job is not None and job.is_finished:
                        return job
                    status = None if job is None else job.status
                    continue
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise JobWaitTimeoutError(
                        f"job {job_id!r} is still {status.value} after {timeout} seconds; wait"
                        " longer, or cancel it (cancel_job)",
                        job_id,
                    )
                with anyio.move_on_after(min(poll_interval, remaining)):
                    await watch.event.wait()
                watch.event.clear()  # before reading: a notification from now on counts
                status = await store.job_status(job_id)
