"""What the dashboard reads and does, on a pool and a schema: no Scheduler and no worker is
needed. Reads are the statements of dashboard/queries.sql; actions are the same store
operations the Scheduler and the CLI use (a running job's cancellation reaches whichever
replica runs it through the database and its NOTIFY)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import asyncpg

from scheduler import operations
from scheduler.models import Attempt, Job, JobStatus
from scheduler.postgres.connection import BoundedPool
from scheduler.postgres.sql import Queries, named_blocks
from scheduler.postgres.store import PostgresJobStore
from scheduler.recurring import decode_trigger, resume_fire_time
from scheduler.validation import validate_queue_name

from .errors import DashboardInputError

#: Statuses the jobs page lists, in the order of its tabs.
LIST_STATUSES = ("failed", "running", "pending", "blocked", "cancelled", "succeeded")
#: Where each status's list starts (its cursor before the first row).
_FIRST_CURSOR: dict[str, list[Any]] = {
    "pending": ["", 0, "-infinity", ""],
    "running": ["-infinity", ""],
    "succeeded": ["infinity", ""],
    "failed": ["infinity", ""],
    "cancelled": ["infinity", ""],
    "blocked": ["infinity", ""],
}
#: Ended jobs counted for throughput: those of the last THROUGHPUT_WINDOW seconds.
THROUGHPUT_WINDOW = 300.0


@dataclass
class Totals:
    """One overview row: a queue's or a task's counts."""

    name: str
    due_now: int = 0
    future: int = 0
    running: int = 0
    blocked: int = 0
    succeeded_recent: int = 0
    failed_recent: int = 0
    failed_hour: int = 0
    lag_seconds: float = 0.0
    paused: bool = False
    #: Pending jobs of this task (or queue) that no live worker serves.
    unserved: int = 0
    #: Why the queue's limits cannot be enforced (its jobs wait); None: no problem.
    problem: str | None = None

    @property
    def per_minute(self) -> float:
        return (self.succeeded_recent + self.failed_recent) * 60.0 / THROUGHPUT_WINDOW

    def add(self, row: asyncpg.Record) -> None:
        for name in ("due_now", "future", "running", "blocked", "succeeded_recent"):
            setattr(self, name, getattr(self, name) + row[name])
        self.failed_recent += row["failed_recent"]
        self.failed_hour += row["failed_hour"]
        self.lag_seconds = max(self.lag_seconds, row["lag_seconds"])

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "due_now": self.due_now,
            "future": self.future,
            "running": self.running,
            "blocked": self.blocked,
            "failed_hour": self.failed_hour,
            "per_minute": round(self.per_minute, 1),
            "lag_seconds": round(self.lag_seconds, 1),
            "paused": self.paused,
            "unserved": self.unserved,
            "problem": self.problem,
        }


@dataclass
class Overview:
    queues: list[Totals]
    tasks: list[Totals]
    live_workers: int
    generated_at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": [q.as_json() for q in self.queues],
            "tasks": [t.as_json() for t in self.tasks],
            "live_workers": self.live_workers,
            "throughput_window_seconds": THROUGHPUT_WINDOW,
        }


@dataclass(frozen=True)
class JobPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class ScheduleRow:
    schedule_id: str
    task_name: str
    trigger: str
    paused: bool
    queue: str
    trigger_error: str | None
    next_fire_time: datetime | None
    last_fire_time: datetime | None
    unfinished_jobs: int
    upcoming: list[datetime]


def encode_cursor(values: list[Any]) -> str:
    return json.dumps(values, separators=(",", ":"))


def decode_cursor(status: str, text: str | None) -> list[Any]:
    """A cursor from the query string, checked for shape: a bad one is refused, not sent."""
    if not text:
        return list(_FIRST_CURSOR[status])
    try:
        values = json.loads(text)
    except ValueError:
        raise DashboardInputError(
            "the page cursor is not valid; start from the first page"
        ) from None
    expected = _FIRST_CURSOR[status]
    if (
        not isinstance(values, list)
        or len(values) != len(expected)
        or any(type(v) is not type(e) for v, e in zip(values, expected, strict=True))
    ):
        raise DashboardInputError("the page cursor is not valid; start from the first page")
    return values


class DashboardData:
    """Reads for the pages, and the operator actions, on one schema."""

    def __init__(self, pool: asyncpg.Pool[Any], schema: str, *, cache_seconds: float) -> None:
        self.pool = pool
        self._db = BoundedPool(pool)  # a page never waits for ever for a connection
        self.schema = schema
        self.q = Queries(schema, named_blocks("scheduler.dashboard", "queries.sql"))
        self.store = PostgresJobStore(pool, schema)
        self._cache_seconds = cache_seconds
        self._overview: Overview | None = None
        self._overview_lock = anyio.Lock()

    # -- reads ------------------------------------------------------------------------
    async def overview(self) -> Overview:
        """The overview counts, read at most once per `cache_seconds` however many
        browsers poll it."""
        async with self._overview_lock:
            cached = self._overview
            if cached is not None and time.time() - cached.generated_at < self._cache_seconds:
                return cached
            async with self._db.acquire() as conn:
                rows = await conn.fetch(self.q.overview_counts, THROUGHPUT_WINDOW)
                settings = await conn.fetch(self.q.queue_settings)
                live = await conn.fetchval(self.q.live_worker_count)
            unserved = await self.store.unserved_tasks()
            queues: dict[str, Totals] = {}
            tasks: dict[str, Totals] = {}
            for row in rows:
                queues.setdefault(row["queue"], Totals(row["queue"])).add(row)
                tasks.setdefault(row["task_name"], Totals(row["task_name"])).add(row)
            for setting in settings:
                totals = queues.setdefault(setting["queue"], Totals(setting["queue"]))
                totals.paused = setting["paused"]
                totals.problem = setting["problem"]
            for entry in unserved:  # "no worker for this task" on the task's row
                tasks.setdefault(entry.task_name, Totals(entry.task_name)).unserved += entry.pending
            self._overview = Overview(
                queues=[queues[name] for name in sorted(queues)],
                tasks=[tasks[name] for name in sorted(tasks)],
                live_workers=live,
            )
            return self._overview

    async def jobs(
        self,
        status: str,
        *,
        task: str | None,
        queue: str | None,
        cursor: str | None,
        limit: int,
    ) -> JobPage:
        if status not in LIST_STATUSES:
            raise DashboardInputError(
                f"unknown status {status!r}; use one of {', '.join(LIST_STATUSES)}"
            )
        after = decode_cursor(status, cursor)
        try:
            rows = await self._db.fetch(
                getattr(self.q, f"jobs_{status}"), task or None, queue or None, *after, limit + 1
            )
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            raise DashboardInputError(
                "the page cursor is not valid; start from the first page"
            ) from None
        found = [dict(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(json.loads(found[-1]["cursor"]))
        return JobPage(found, next_cursor)

    async def job_exists(self, job_id: str) -> bool:
        return bool(await self._db.fetchval(self.q.job_exists, job_id))

    async def job(self, job_id: str) -> tuple[Job, list[Attempt]] | None:
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        return job, await self.store.get_attempts(job_id)

    async def schedules(self, after: str, limit: int) -> tuple[list[ScheduleRow], str | None]:
        rows = await self._db.fetch(self.q.schedules_page, after, limit + 1)
        now = datetime.now().astimezone()
        found = []
        for row in rows[:limit]:
            upcoming: list[datetime] = []
            described = row["trigger"]
            try:
                trigger = decode_trigger(row["trigger"])
                described = repr(trigger)
                fire = row["next_fire_time"]
                while fire is not None and len(upcoming) < 3 and not row["paused"]:
                    upcoming.append(fire)
                    fire = trigger.next_fire_time(max(fire, now))
            except Exception:  # an unreadable trigger is shown as stored, with its error
                upcoming = []
            found.append(
                ScheduleRow(
                    schedule_id=row["schedule_id"],
                    task_name=row["task_name"],
                    trigger=described,
                    paused=row["paused"],
                    queue=row["queue"],
                    trigger_error=row["trigger_error"],
                    next_fire_time=row["next_fire_time"],
                    last_fire_time=row["last_fire_time"],
                    unfinished_jobs=row["unfinished_jobs"],
                    upcoming=upcoming,
                )
            )
        next_cursor = found[-1].schedule_id if len(rows) > limit else None
        return found, next_cursor

    async def workers(self, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._db.fetch(self.q.workers_page, limit)]

    # -- actions (the same operations as Scheduler and the CLI) --------------------------
    async def cancel_job(self, job_id: str) -> str:
        previous = await self.store.cancel_job(job_id)
        if previous is None:
            return f"job {job_id} was not pending, blocked or running: nothing to cancel"
        if previous is JobStatus.RUNNING:
            return f"cancellation of running job {job_id} requested; its replica stops it"
        return f"job {job_id} cancelled"

    async def retry_job(self, job_id: str) -> str:
        await operations.retry_job(self.pool, self.schema, job_id, 0.0)
        return f"job {job_id} will run again"

    async def pause_queue(self, queue: str) -> str:
        await self.store.pause_queue(validate_queue_name(queue, DashboardInputError))
        self._overview = None
        return f"queue {queue} paused"

    async def resume_queue(self, queue: str) -> str:
        was_paused = await self.store.resume_queue(validate_queue_name(queue, DashboardInputError))
        self._overview = None
        return f"queue {queue} resumed" if was_paused else f"queue {queue} was not paused"

    async def pause_schedule(self, schedule_id: str) -> str:
        if not await self.store.pause_schedule(schedule_id):
            raise DashboardInputError(f"no schedule {schedule_id!r}")
        return f"schedule {schedule_id} paused"

    async def resume_schedule(self, schedule_id: str) -> str:
        if not await self.store.resume_schedule(schedule_id, resume_fire_time):
            raise DashboardInputError(f"no schedule {schedule_id!r}")
        return f"schedule {schedule_id} resumed"
