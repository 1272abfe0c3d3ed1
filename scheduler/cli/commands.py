"""The commands that read and change the database: migrate, status, jobs, retry, purge,
stats, show, attempts, cancel, schedules, queues and limits, enqueue, dashboard; `run()`
opens the pool and dispatches to them (the worker and doctor have modules of their own)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from typing import Any

import asyncpg

from scheduler import operations
from scheduler.cli.parser import worker_settings
from scheduler.cli.worker import (
    check_can_listen,
    describe_limits,
    import_task_modules,
    run_worker,
)
from scheduler.config import SchedulerConfig, default_schema
from scheduler.error_text import error_line
from scheduler.errors import InvalidDsnError
from scheduler.flow import Limits, QueueStats, TaskLimits, legacy_kinds
from scheduler.operations import FINISHED, OperationError
from scheduler.poll_only import check_max_size
from scheduler.postgres import migrate as migrations
from scheduler.postgres.dsn import normalize_dsn
from scheduler.postgres.sql import quote_identifier, validate_schema_name
from scheduler.scheduler import Scheduler

#: How long opening a connection may take before the command gives up.
CONNECT_TIMEOUT_SECONDS = 10.0


#: asyncpg's own default for statement_cache_size.
ASYNCPG_STATEMENT_CACHE = 100


async def open_pool(
    dsn: str | None, max_size: int, statement_cache_size: int | None = None
) -> asyncpg.Pool[Any]:
    """A pool for `dsn` (normalized: see scheduler.postgres.dsn). asyncpg's own DSN errors
    (and the ValueError it lets through for some) become `InvalidDsnError`. An idle worker
    keeps only the connections it uses (docs/scale.md, Connections)."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_SECONDS,
            max_inactive_connection_lifetime=60.0,
            statement_cache_size=ASYNCPG_STATEMENT_CACHE
            if statement_cache_size is None
            else statement_cache_size,
        )
    except (asyncpg.ClientConfigurationError, ValueError) as exc:
        raise InvalidDsnError(f"invalid DSN: {exc}") from None
    assert pool is not None
    return pool


async def run(options: argparse.Namespace) -> int:
    schema = validate_schema_name(options.schema or default_schema())
    # What can be refused without a database is refused first.
    if options.command == "dashboard":
        check_dashboard_extra()
        check_can_listen(options.host, options.port, "--port or --host")
    if options.command == "worker":
        import_task_modules(options.imports)
        settings = worker_settings(options)
        settings.pop("listen_dsn", None)  # a connection, not a setting: checked on use
        SchedulerConfig.from_options(**settings)  # refuses a bad value (exit 2)
        if options.pool_size is not None:
            check_max_size(options.pool_size, settings.get("listen", True))
        if options.metrics_port is not None:
            check_can_listen(
                options.metrics_address, options.metrics_port, "--metrics-port or --metrics-address"
            )
    dsn = normalize_dsn(options.dsn)
    if options.command == "doctor":
        from scheduler.cli.doctor import run_doctor

        return await run_doctor(
            dsn,
            schema,
            runtime_roles=options.runtime_role,
            producer_roles=options.producer_role,
            replicas=options.replicas,
            pool_size=options.pool_size,
        )
    pool = await open_pool(
        dsn,
        getattr(options, "pool_size", None)
        or 4 + (getattr(options, "max_concurrent_jobs", 0) or 10),
        options.statement_cache_size,
    )
    try:
        if options.command not in ("migrate", "status", "worker"):
            async with pool.acquire() as conn:
                await migrations.check_schema(conn, schema)  # says to run `migrate`
        if options.command == "migrate":
            async with pool.acquire() as conn:
                applied = await migrations.migrate(conn, schema)
            print(
                f"schema {schema!r}: applied {applied or 'nothing'};"
                f" now at version {migrations.latest_version()}"
            )
        elif options.command == "status":
            return await print_status(pool, schema)
        elif options.command in ("jobs", "retry", "retry-failed", "purge", "stats"):
            return await run_operation(pool, schema, options)
        elif options.command in ("show", "attempts"):
            return await print_job(Scheduler(pool, schema=schema), options)
        elif options.command == "cancel":
            cancelled = await Scheduler(pool, schema=schema).cancel_job(options.job_id)
            print("cancelled" if cancelled else "not cancelled (unknown or already finished)")
            return 0 if cancelled else 1
        elif options.command == "schedules":
            await print_schedules(Scheduler(pool, schema=schema), as_json=options.json)
        elif options.command in ("pause", "resume", "remove"):
            scheduler = Scheduler(pool, schema=schema)
            action = getattr(scheduler, f"{options.command}_schedule")
            if not await action(options.schedule_id):
                print(f"error: no schedule {options.schedule_id!r}", file=sys.stderr)
                return 1
            print(f"{options.command}d {options.schedule_id}")
        elif options.command in FLOW_COMMANDS:
            return await run_flow_command(Scheduler(pool, schema=schema), options)
        elif options.command == "enqueue":
            return await enqueue(Scheduler(pool, schema=schema), options)
        elif options.command == "worker":
            await run_worker(
                pool,
                schema,
                worker_settings(options),
                metrics_at=None
                if options.metrics_port is None
                else (options.metrics_address, options.metrics_port),
            )
        elif options.command == "dashboard":
            await run_dashboard(pool, schema, options)
    finally:
        await pool.close()
    return 0


async def run_operation(pool: asyncpg.Pool[Any], schema: str, options: argparse.Namespace) -> int:
    """jobs, retry, purge and stats: the operator commands over the SQL API and views."""
    if options.command == "jobs":
        found = await operations.list_jobs(
            pool,
            schema,
            statuses=options.status,
            tasks=options.task,
            since=options.since,
            until=options.until,
            limit=options.limit,
        )
        print_jobs(found, as_json=options.json)
        if not found:
            await explain_no_match(pool, schema, options.task)
    elif options.command == "retry":
        await operations.retry_job(pool, schema, options.job_id, options.delay)
        print(f"retrying {options.job_id}")
    elif options.command == "retry-failed":
        retried = await operations.retry_failed_jobs(
            pool, schema, options.task, options.since, options.delay
        )
        print(f"retrying {retried} job(s)")
        if not retried:
            await explain_no_match(pool, schema, [options.task] if options.task else [])
    elif options.command == "purge":
        deleted = await operations.purge_jobs(
            pool,
            schema,
            options.before,
            statuses=options.status or FINISHED,
            batch_size=options.batch_size,
        )
        print(f"purged {deleted} job(s)")
    elif options.command == "stats":
        print_stats(await operations.stats(pool, schema), as_json=options.json)
    return 0


async def explain_no_match(pool: asyncpg.Pool[Any], schema: str, tasks: list[str]) -> None:
    """A list or bulk command matched nothing: say so on stderr, and when a --task filter
    names no task that has jobs, the names it may have meant (filters match exactly: a
    partial name would otherwise silently match nothing)."""
    known: list[str] = [
        row["task_name"]
        for row in await pool.fetch(
            f"SELECT DISTINCT task_name FROM {quote_identifier(schema)}.jobs"
            " ORDER BY task_name LIMIT $1",
            TASK_NAMES_FOR_HINTS,
        )
    ]
    for wanted in tasks:
        if wanted in known:
            continue
        close = [name for name in known if wanted.lower() in name.lower()]
        close += [n for n in difflib.get_close_matches(wanted, known, n=3) if n not in close]
        hint = f"; did you mean {' or '.join(repr(n) for n in close[:3])}?" if close else ""
        print(
            f"no jobs of a task named {wanted!r} (--task matches the whole name,"
            f" module:function){hint}",
            file=sys.stderr,
        )
        return
    print("no jobs match", file=sys.stderr)


#: Hints compare a --task filter with at most this many task names.
TASK_NAMES_FOR_HINTS = 10_000


async def enqueue(scheduler: Scheduler, options: argparse.Namespace) -> int:
    """`enqueue TASK ...`: one job by task name, through schedule()'s own checks."""
    job_id = await scheduler.schedule(
        options.task,
        options.at,
        delay=options.delay,
        args=options.args,
        kwargs=options.kwargs,
        job_id=options.job_id,
        priority=options.priority,
        max_retries=options.max_retries,
        queue=options.queue,
        conflict_resolution=options.conflict,
    )
    print(job_id)
    return 0


async def print_job(scheduler: Scheduler, options: argparse.Namespace) -> int:
    """`show`: the job and its attempts as JSON; `attempts`: its history, one line each."""
    job = await scheduler.get_job(options.job_id)
    if job is None:
        print(
            f"error: no job {options.job_id!r} (unknown, or pruned after the retention period)",
            file=sys.stderr,
        )
        return 1
    history = [dataclasses.asdict(a) for a in await scheduler.get_attempts(options.job_id)]
    if options.command == "show":
        print(_json({**dataclasses.asdict(job), "attempt_history": history}, indent=2))
    elif options.json:
        print(_json(history, indent=2))
    else:
        for entry in history:
            error = error_line(entry["error_type"], entry["error_message"], entry["error"])
            print(
                f"#{entry['attempt']}  {entry['outcome'].value:<11}  {entry['finished_at']}"
                f"  {entry['hostname'] or '-'}  {entry['worker_id'] or '-'}  {error}".rstrip()
            )
    return 0


async def print_status(pool: asyncpg.Pool[Any], schema: str) -> int:
    async with pool.acquire() as conn:
        version = await migrations.current_version(conn, schema)
        print(
            f"schema {schema!r} at version {version} (this release knows"
            f" {migrations.latest_version()})"
        )
        if version == 0:
            print(
                f"error: schema {schema!r} is not migrated: run `scheduler migrate`",
                file=sys.stderr,
            )
            return 1
        if version < migrations.latest_version():
            print("  older than this release: run `scheduler migrate`")
        q = quote_identifier(schema)
        for row in await conn.fetch(
            f"SELECT status, count(*) AS n FROM {q}.jobs GROUP BY status ORDER BY status"
        ):
            print(f"  {row['status']:<10} {row['n']}")
        for row in await conn.fetch(
            f"SELECT worker_id, hostname, pid, lease_expires_at > now() AS alive,"
            f" cardinality(tasks) AS tasks FROM {q}.workers ORDER BY started_at"
        ):
            state = "alive" if row["alive"] else "expired"
            print(
                f"  worker {row['worker_id']} {row['hostname']}:{row['pid']} {state},"
                f" {row['tasks']} task(s)"
            )
    for unserved in await operations.unserved_tasks(pool, schema):
        print(
            f"  no worker for this task: {unserved.task_name} (queue {unserved.queue}),"
            f" {unserved.pending} pending job(s)"
        )
    return 0


def print_jobs(found: list[dict[str, Any]], *, as_json: bool) -> None:
    for job in found:
        if as_json:
            print(json.dumps(job, default=str))
            continue
        # The exception's type and message, not its traceback (that is in `show`).
        error = error_line(job["error_type"], job["error_message"], job["last_error"])
        error = f"  {error[:80]}…" if len(error) > 80 else f"  {error}" if error else ""
        print(
            f"{job['job_id']}  {job['status']:<9}  {job['task_name']}"
            f"  due {job['execution_time']:%Y-%m-%d %H:%M:%S%z}  attempts {job['attempts']}"
            f"{error}"
        )


def print_stats(found: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(found, default=str))
        return
    print(
        f"{'task':<40} {'due':>6} {'future':>7} {'running':>7} {'ok/1h':>6} {'failed/1h':>9}"
        f" {'lag s':>8}"
    )
    for row in found["tasks"]:
        print(
            f"{row['task_name']:<40} {row['due_now']:>6} {row['future']:>7} {row['running']:>7}"
            f" {row['succeeded_last_hour']:>6} {row['failed_last_hour']:>9}"
            f" {row['oldest_due_seconds']:>8.1f}"
        )
    print(
        f"live workers {found['live_workers']}, stalled jobs {found['stalled_jobs']},"
        f" failures in the last day {found['failures_last_day']}"
    )


async def print_schedules(scheduler: Scheduler, *, as_json: bool) -> None:
    for schedule in await scheduler.list_schedules():
        if as_json:
            fields = dataclasses.asdict(schedule) | {"trigger": schedule.trigger.to_json()}
            print(_json(fields))
            continue
        state = "paused" if schedule.paused else f"next {schedule.next_fire_time or 'never'}"
        print(f"{schedule.schedule_id}  {schedule.task_name}  {schedule.trigger!r}  {state}")


FLOW_COMMANDS = ("queues", "pause-queue", "resume-queue", "queue-limits", "task-limits")


def _flow_json(record: QueueStats | TaskLimits) -> dict[str, object]:
    """A queue's or task's record as JSON: every limit as its kind and settings."""
    return dataclasses.asdict(record) | {"all_limits": [x.as_row() for x in record.all_limits]}


async def run_flow_command(scheduler: Scheduler, options: argparse.Namespace) -> int:
    """queues, pause-queue, resume-queue, queue-limits, task-limits."""
    if options.command == "queues":
        queues = await scheduler.queue_stats()
        tasks = await scheduler.task_limits()
        if options.json:
            print(
                _json(
                    {
                        "queues": [_flow_json(q) for q in queues],
                        "tasks": [_flow_json(t) for t in tasks],
                    }
                )
            )
            return 0
        print(f"{'queue':<30} {'due':>7} {'future':>7} {'running':>7} {'state':<7} limits")
        for queue in queues:
            state = "paused" if queue.paused else "active"
            print(
                f"{queue.queue:<30} {queue.due_now:>7} {queue.future:>7} {queue.running:>7}"
                f" {state:<7} {describe_limits(queue.all_limits)}"
            )
            if queue.problem is not None:
                print(f"  limits not enforced, jobs wait: {queue.problem}")
        for task in tasks:
            print(
                f"task {task.task_name}: {task.running} running, {describe_limits(task.all_limits)}"
            )
            if task.problem is not None:
                print(f"  limits not enforced, jobs wait: {task.problem}")
    elif options.command == "pause-queue":
        await scheduler.pause_queue(options.queue)
        print(f"paused queue {options.queue}")
    elif options.command == "resume-queue":
        was_paused = await scheduler.resume_queue(options.queue)
        print(f"resumed queue {options.queue}" if was_paused else f"{options.queue} was not paused")
    else:
        setter = (
            scheduler.set_queue_limits
            if options.command == "queue-limits"
            else scheduler.set_task_limits
        )
        target = options.queue if options.command == "queue-limits" else options.task
        limits = Limits(options.concurrency, options.rate, options.per, options.burst)
        await setter(
            target,
            concurrency_limit=limits.concurrency_limit,
            rate_limit=limits.rate_limit,
            rate_period=limits.rate_period,
            rate_burst=limits.rate_burst,
        )
        print(f"limits of {target}: {describe_limits(legacy_kinds(limits))}")
    return 0


def check_dashboard_extra() -> None:
    try:
        import scheduler.dashboard.serve  # noqa: F401
    except ImportError as exc:
        # scheduler.dashboard raises its own ImportError naming the extra: name only the
        # missing module here, so the advice is not printed twice, nested.
        missing = getattr(exc.__cause__, "name", None) or exc.name or "a module"
        raise OperationError(
            f"the dashboard needs the 'dashboard' extra ({missing} is not installed):"
            " pip install 'pgcadence[dashboard]'"
        ) from None


async def run_dashboard(pool: asyncpg.Pool[Any], schema: str, options: argparse.Namespace) -> None:
    from scheduler.dashboard.serve import serve

    await serve(
        pool,
        schema,
        host=options.host,
        port=options.port,
        allow_actions=options.allow_actions,
        secret=options.secret,
    )


def _json(value: Any, indent: int | None = None) -> str:
    """A row as JSON. Integers longer than Python's int-to-str limit (a row written by SQL
    may hold them) are printed in full instead of failing."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(value, default=str, indent=indent)
    finally:
        sys.set_int_max_str_digits(limit)
