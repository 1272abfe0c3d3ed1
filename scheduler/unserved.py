"""A warning for jobs no worker will run: `schedule("myjobs:gret", ...)` (a typo) was
accepted and failed an hour later as unrunnable, in silence until then.

`schedule()` and `schedule_many()` ask the database, once per task name per `Scheduler`,
whether a live worker has registered the task; if none has, a WARNING says so. Only the
first job of each name pays the round trip (bounded by CHECK_TIMEOUT; a failed check is
skipped, never raised). A producer that starts before its workers is a common order, so
it stays a warning, worded for both cases. `scheduler status` and the dashboard show the
pending jobs of such tasks as "no worker for this task".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio

from scheduler.store import JobStore

logger = logging.getLogger("scheduler")

#: Longest a first schedule() of a task name waits for the check before going on.
CHECK_TIMEOUT = 2.0


class UnservedTaskCheck:
    def __init__(self, store: JobStore, served_here: Callable[[str], bool]) -> None:
        self._store = store
        self._served_here = served_here
        self._checked: set[str] = set()

    async def check(self, task_names: Iterable[str]) -> None:
        """Warn about each name not checked yet that no live worker has registered."""
        for name in dict.fromkeys(task_names):
            if name in self._checked:
                continue
            self._checked.add(name)
            if self._served_here(name):
                continue
            try:
                with anyio.fail_after(CHECK_TIMEOUT):
                    served, live_workers = await self._store.task_served(name)
            except Exception as exc:  # a hint, never a reason to fail schedule()
                logger.debug("could not check whether task %r has a worker: %r", name, exc)
                continue
            if served:
                continue
            if live_workers == 0:
                logger.warning(
                    "task %r: no live worker yet; its jobs wait until a worker that registers"
                    " it starts (fine if workers start after this producer; a job no worker"
                    " registers within unrunnable_job_timeout fails)",
                    name,
                )
            else:
                logger.warning(
                    "task %r: none of the %d live worker(s) has registered it; its jobs wait"
                    " and fail after unrunnable_job_timeout unless a worker registering it"
                    " starts. Check the name (a typo?) and that the workers import and register"
                    " the task",
                    name,
                    live_workers,
                )
