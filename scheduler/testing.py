"""Helpers for testing an application's jobs against its own test database.

    from scheduler import testing

    async def test_signup_sends_a_welcome_mail(scheduler):
        await signup(scheduler, "ada@example.com")
        job = await testing.assert_enqueued(scheduler, send_welcome, args=["ada@example.com"])
        [done] = await testing.run_due(scheduler)
        assert done.job_id == job.job_id and done.status is JobStatus.SUCCEEDED

- `enqueued()` / `assert_enqueued()` look at the jobs waiting (pending or blocked), without
  running them.
- `run_due()` runs every job that is due, to completion, on the given started scheduler
  (in this process, through its real claim, run and record path), including jobs those
  jobs enqueue and retries, as long as they are due; it returns the jobs that finished
  since the previous call (a started scheduler also runs due jobs in the background).
- `advance()` moves a virtual clock forward and runs, in time order, what falls due on
  the way: the slots of recurring schedules (fired as the ticker fires them, so coalescing,
  `max_running` and misfire rules hold), jobs scheduled for later, retries.

The virtual clock: each scheduler has an offset (zero at first) that `advance()` adds to;
"now" for these helpers is the database clock plus that offset (`now()`). Jobs due by the
virtual now but after the real one are made due at once when they run: their stored
`execution_time` becomes the moment they were run. A job scheduled with `delay=` counts
from the real clock, so after `advance()` it is due earlier than the virtual clock says;
pass `execution_time=await testing.now(scheduler) + ...` where that matters.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio

from scheduler.errors import SchedulerNotRunningError
from scheduler.models import Job, SchedulerState
from scheduler.postgres.connection import pooled_transaction
from scheduler.postgres.sql import render
from scheduler.postgres.store import PostgresJobStore, _columns, _stored_due_schedule
from scheduler.recurring import plan_firing, plan_first_fires
from scheduler.scheduler import Scheduler

__all__ = ["advance", "assert_enqueued", "enqueued", "now", "run_due"]

#: How many firing-and-running steps one `advance()` may take (one per distinct due time).
MAX_STEPS = 10_000

_offsets: weakref.WeakKeyDictionary[Scheduler, timedelta] = weakref.WeakKeyDictionary()
#: Where the next `run_due()` starts collecting finished jobs: the end of the previous one.
_finished_since: weakref.WeakKeyDictionary[Scheduler, datetime] = weakref.WeakKeyDictionary()

_DUE_SCHEDULES = """
SELECT s.schedule_id, s.trigger::text AS trigger, s.next_fire_time, s.coalesce_policy,
       s.misfire_grace_seconds, s.max_running, s.jitter_seconds,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.schedule_id = s.schedule_id AND j.status IN ('pending', 'running'))::integer
           AS unfinished_jobs
FROM {schema}.schedules s
WHERE NOT s.paused AND s.next_fire_time <= $1
ORDER BY s.next_fire_time
FOR UPDATE OF s
"""

# Jobs due by the virtual now that this scheduler can run: made due at the real now.
_BRING_FORWARD = """
UPDATE {schema}.jobs SET execution_time = now(), updated_at = now()
WHERE status = 'pending' AND execution_time <= $1 AND execution_time > now()
  AND task_name = ANY ($2::text[]) AND queue = ANY ($3::text[])
"""

# What is still to do by the virtual now: due pending jobs, and running ones.
_OUTSTANDING = """
SELECT job_id, status FROM {schema}.jobs
WHERE task_name = ANY ($2::text[]) AND queue = ANY ($3::text[])
  AND (status = 'running' OR (status = 'pending' AND execution_time <= greatest($1, now())))
ORDER BY execution_time LIMIT 10
"""

_STARTED = "SELECT started_at FROM {schema}.workers WHERE worker_id = $1"

_FINISHED_SINCE = """
SELECT job_id FROM {schema}.jobs
WHERE finished_at >= $1 AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY finished_at, job_id
"""

# The next moment something falls due (a schedule's slot or a pending job), by $1.
_NEXT_DUE = """
SELECT min(t) FROM (
    SELECT min(next_fire_time) AS t FROM {schema}.schedules WHERE NOT paused
    UNION ALL
    SELECT min(execution_time) FROM {schema}.jobs
    WHERE status = 'pending' AND task_name = ANY ($2::text[]) AND queue = ANY ($3::text[])
) due WHERE t <= $1
"""

_WAITING = """
SELECT job_id FROM {schema}.jobs
WHERE status IN ('pending', 'blocked')
  AND ($1::text IS NULL OR task_name = $1) AND ($2::text IS NULL OR queue = $2)
ORDER BY execution_time, created_at, job_id
"""


async def now(scheduler: Scheduler) -> datetime:
    """The virtual now of these helpers: the database clock plus what `advance()` added."""
    db_now: datetime = await _store(scheduler).pool.fetchval("SELECT now()")
    return db_now + _offsets.get(scheduler, timedelta(0))


async def enqueued(
    scheduler: Scheduler,
    task: Callable[..., Any] | str | None = None,
    *,
    queue: str | None = None,
) -> list[Job]:
    """The jobs waiting to run (pending or blocked), of `task` and in `queue` if given,
    earliest due first. Nothing runs."""
    store = _store(scheduler)
    task_name = None if task is None else _task_name(scheduler, task)
    rows = await store.pool.fetch(_sql(store, _WAITING), task_name, queue)
    return await _jobs(scheduler, [row["job_id"] for row in rows])


async def assert_enqueued(
    scheduler: Scheduler,
    task: Callable[..., Any] | str,
    *,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
) -> Job:
    """The one waiting job of `task` with these `args` / `kwargs` (those given); an
    `AssertionError` listing what is waiting when there is none, or more than one."""
    waiting = await enqueued(scheduler, task, queue=queue)
    matching = [
        job
        for job in waiting
        if (args is None or list(job.args) == list(args))
        and (kwargs is None or dict(job.kwargs) == dict(kwargs))
    ]
    if len(matching) == 1:
        return matching[0]
    wanted = f"{_task_name(scheduler, task)}(args={args!r}, kwargs={kwargs!r})"
    found = "; ".join(f"{j.task_name}(args={j.args!r}, kwargs={j.kwargs!r})" for j in waiting)
    raise AssertionError(
        f"expected one waiting job {wanted}, found {len(matching)}; waiting: {found or 'none'}"
    )


async def run_due(
    scheduler: Scheduler, *, at: datetime | None = None, timeout: float = 30.0
) -> list[Job]:
    """Run every job due by `at` (default: the virtual now) to completion on `scheduler`,
    which must be started. Schedules due by then fire first; jobs the jobs enqueue, and
    retries, run too if due by then. `AssertionError` after `timeout` seconds, naming what
    is left (a job of a paused queue, or held back by limits, never runs here either).

    Returns the jobs that finished since the previous `run_due()` or `advance()` on it
    (the first time: since it started), in the order they finished: a started scheduler
    also runs due jobs in the background, before this is called."""
    _require_running(scheduler)
    store = _store(scheduler)
    when = at if at is not None else await now(scheduler)
    since = _finished_since.get(scheduler)
    if since is None:  # the first call: since the scheduler started
        since = await store.pool.fetchval(
            _sql(store, _STARTED), scheduler.worker_id
        ) or await store.pool.fetchval("SELECT now()")
    tasks, queues = _runnable(scheduler)
    outstanding: list[Any] = []
    with anyio.move_on_after(timeout):
        while True:
            await _fire_schedules(store, when)
            await store.pool.execute(_sql(store, _BRING_FORWARD), when, tasks, queues)
            outstanding = await store.pool.fetch(_sql(store, _OUTSTANDING), when, tasks, queues)
            if not outstanding:
                break
            await anyio.sleep(0.01)
    if outstanding:
        left = ", ".join(f"{row['job_id']} ({row['status']})" for row in outstanding)
        raise AssertionError(
            f"jobs due by {when.isoformat()} did not finish within {timeout}s: {left}"
            f" (is the queue paused or limited? does {scheduler!r} run the task?)"
        )
    rows = await store.pool.fetch(_sql(store, _FINISHED_SINCE), since)
    _finished_since[scheduler] = await store.pool.fetchval("SELECT now()")
    return await _jobs(scheduler, [row["job_id"] for row in rows])


async def advance(scheduler: Scheduler, by: timedelta, *, timeout: float = 30.0) -> list[Job]:
    """Move the virtual clock forward by `by` and run, in time order, everything that
    falls due on the way: each schedule slot fires at its own time (so a job it starts
    has finished before the next slot, unless it fails and waits for a retry), then the
    jobs due by then run. Returns the jobs that finished, in order."""
    if not isinstance(by, timedelta) or by < timedelta(0):
        raise ValueError(f"advance() takes a timedelta >= 0, got {by!r}")
    _require_running(scheduler)
    store = _store(scheduler)
    start = await now(scheduler)
    target = start + by
    tasks, queues = _runnable(scheduler)
    finished: list[Job] = []
    for _ in range(MAX_STEPS):
        due: datetime | None = await store.pool.fetchval(
            _sql(store, _NEXT_DUE), target, tasks, queues
        )
        if due is None:
            break
        step = max(due, start)
        finished += await run_due(scheduler, at=step, timeout=timeout)
        if step >= target:
            break
    else:
        raise AssertionError(f"advance() stopped after {MAX_STEPS} steps; advance less")
    _offsets[scheduler] = _offsets.get(scheduler, timedelta(0)) + by
    finished += await run_due(scheduler, at=target, timeout=timeout)
    return _unique(finished)


async def _fire_schedules(store: PostgresJobStore, at: datetime) -> None:
    """The ticker's firing pass, with `at` as the clock (see PostgresJobStore)."""
    while await store.plan_new_schedules(100, plan_first_fires):
        pass
    async with pooled_transaction(store.pool) as conn:
        rows = await conn.fetch(_sql(store, _DUE_SCHEDULES), at)
        if not rows:
            return
        firing = plan_firing([_stored_due_schedule(row) for row in rows], at)
        for schedule_id in firing.unreadable:
            await conn.execute(store.q.park_schedule, schedule_id)
        if firing.jobs:
            slots = [(j.job_id, j.schedule_id, j.fire_time, j.run_at) for j in firing.jobs]
            await conn.fetch(store.q.insert_schedule_jobs, *_columns(slots))
        if firing.advances:
            advances = [
                (a.schedule_id, a.next_fire_time, a.last_fire_time) for a in firing.advances
            ]
            await conn.execute(store.q.advance_schedules, *_columns(advances))


def _store(scheduler: Scheduler) -> PostgresJobStore:
    store = scheduler._store
    if not isinstance(store, PostgresJobStore):
        raise TypeError("scheduler.testing needs a Scheduler on PostgreSQL")
    return store


def _sql(store: PostgresJobStore, template: str) -> str:
    return render(template, store.schema)


def _task_name(scheduler: Scheduler, task: Callable[..., Any] | str) -> str:
    return scheduler._tasks.resolve(task).name


def _runnable(scheduler: Scheduler) -> tuple[list[str], list[str]]:
    """The tasks and queues `scheduler` claims: only their jobs can run here."""
    return scheduler._tasks.names(), scheduler.queues


def _require_running(scheduler: Scheduler) -> None:
    if scheduler.state is not SchedulerState.RUNNING:
        raise SchedulerNotRunningError(
            f"the scheduler is {scheduler.state.value}; run_due() and advance() run jobs"
            " on a started scheduler: `async with scheduler:` in your fixture"
        )


async def _jobs(scheduler: Scheduler, job_ids: Sequence[str]) -> list[Job]:
    found = [await scheduler.get_job(job_id) for job_id in job_ids]
    return [job for job in found if job is not None]


def _unique(jobs: Sequence[Job]) -> list[Job]:
    """Each job once, at its last finish (a job retried by hand can finish twice)."""
    latest = {job.job_id: job for job in jobs}
    order = {job.job_id: index for index, job in enumerate(jobs)}
    return sorted(latest.values(), key=lambda job: order[job.job_id])
