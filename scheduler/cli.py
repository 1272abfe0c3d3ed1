"""`scheduler` / `python -m scheduler`: migrate, inspect, cancel, retry and purge jobs,
manage schedules, pause queues and set limits, read the monitoring views, run a worker.

The connection comes from --dsn, else $SCHEDULER_DSN, else libpq's defaults (PGHOST,
PGUSER, ...); the schema from --schema, else $SCHEDULER_SCHEMA, else "scheduler"; the log
level from --log-level, else $SCHEDULER_LOG_LEVEL, else INFO.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from scheduler import __version__, operations
from scheduler.errors import SchedulerError
from scheduler.flow import Limits
from scheduler.operations import FINISHED, OperationError, parse_point_in_time
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier, validate_schema_name
from scheduler.scheduler import Scheduler, default_schema
from scheduler.tasks import default_registry


def _point_in_time(text: str) -> operations.PointInTime:
    try:
        return parse_point_in_time(text)
    except OperationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scheduler", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SCHEDULER_DSN"),
        help="PostgreSQL DSN (default: $SCHEDULER_DSN or libpq defaults)",
    )
    parser.add_argument(
        "--statement-cache-size",
        type=_cache_size,
        default=os.environ.get("SCHEDULER_STATEMENT_CACHE_SIZE"),
        metavar="N",
        help="asyncpg's statement cache per connection (default:"
        " $SCHEDULER_STATEMENT_CACHE_SIZE or asyncpg's 100); 0 through PgBouncer in"
        " transaction mode",
    )
    parser.add_argument(
        "--schema",
        default=None,
        help="schema of the scheduler tables (default: $SCHEDULER_SCHEMA or 'scheduler')",
    )
    parser.add_argument("--version", action="version", version=f"scheduler {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SCHEDULER_LOG_LEVEL", "INFO").upper(),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default: $SCHEDULER_LOG_LEVEL or INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending schema migrations")
    commands.add_parser("status", help="schema version, jobs per status, live workers")
    jobs = commands.add_parser("jobs", help="list jobs, newest change first")
    jobs.add_argument("--status", action="append", default=[], help="repeatable")
    jobs.add_argument("--task", action="append", default=[], help="task name; repeatable")
    jobs.add_argument("--since", type=_point_in_time, help="changed at/after: ISO or 2h")
    jobs.add_argument("--until", type=_point_in_time, help="changed before: ISO or 2h")
    jobs.add_argument("--limit", type=int, default=100)
    jobs.add_argument("--json", action="store_true", help="one JSON object per line")
    retry = commands.add_parser("retry", help="run a failed or cancelled job again")
    retry.add_argument("job_id")
    retry.add_argument("--delay", type=float, default=0.0, help="seconds from now")
    retry_failed = commands.add_parser(
        "retry-failed", help="run again every job that failed (of a task, since a time)"
    )
    retry_failed.add_argument("--task", help="only jobs of this task name")
    retry_failed.add_argument(
        "--since", type=_point_in_time, help="failed at or after T (default: ever)"
    )
    retry_failed.add_argument("--delay", type=float, default=0.0, help="seconds from now")
    purge = commands.add_parser("purge", help="delete finished jobs, in batches")
    purge.add_argument(
        "--before", type=_point_in_time, required=True, help="finished before: ISO or 7d"
    )
    purge.add_argument("--status", action="append", choices=FINISHED, help="default: all three")
    purge.add_argument("--batch-size", type=int, default=1000)
    stats = commands.add_parser("stats", help="per-task depth, lag and outcomes; fleet health")
    stats.add_argument("--json", action="store_true", help="one JSON document")
    show = commands.add_parser("show", help="print one job and its attempts as JSON")
    show.add_argument("job_id")
    attempts = commands.add_parser("attempts", help="one job's attempt history")
    attempts.add_argument("job_id")
    attempts.add_argument("--json", action="store_true")
    cancel = commands.add_parser("cancel", help="cancel a job (pending or running)")
    cancel.add_argument("job_id")
    schedules = commands.add_parser("schedules", help="list recurring schedules")
    schedules.add_argument("--json", action="store_true", help="one JSON object per line")
    for verb, text in (
        ("pause", "stop a schedule firing (on every replica)"),
        ("resume", "fire again from the next slot after now"),
        ("remove", "delete a schedule (jobs it fired stay)"),
    ):
        commands.add_parser(verb, help=text).add_argument("schedule_id")
    queues = commands.add_parser("queues", help="queues: depth, running, paused, limits")
    queues.add_argument("--json", action="store_true", help="one JSON document")
    for verb, text in (
        ("pause-queue", "stop every replica claiming from a queue (running jobs finish)"),
        ("resume-queue", "let replicas claim from a queue again"),
    ):
        commands.add_parser(verb, help=text).add_argument("queue")
    for verb, what in (("queue-limits", "queue"), ("task-limits", "task")):
        limits = commands.add_parser(
            verb, help=f"set a {what}'s fleet-wide limits (none given: remove them)"
        )
        limits.add_argument(what)
        limits.add_argument("--concurrency", type=int, help="at most N running at once")
        limits.add_argument("--rate", type=int, help="at most N starts per --per seconds")
        limits.add_argument("--per", type=float, default=1.0, help="rate period in seconds")
        limits.add_argument("--burst", type=int, default=1, help="starts allowed at once")
    dashboard = commands.add_parser(
        "dashboard", help="serve the web dashboard (needs the 'dashboard' extra)"
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dashboard.add_argument(
        "--allow-actions",
        action="store_true",
        help="let whoever reaches the port cancel, retry and pause (default: read-only)",
    )
    dashboard.add_argument(
        "--secret",
        default=os.environ.get("SCHEDULER_DASHBOARD_SECRET"),
        help="key signing the CSRF tokens (default: $SCHEDULER_DASHBOARD_SECRET or random)",
    )
    worker = commands.add_parser("worker", help="run a scheduler replica until SIGTERM")
    worker.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module whose @task functions to run (repeatable)",
    )
    add_replica_settings(worker)
    worker.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=None,
        metavar="QUEUE",
        help="queue to work (repeatable; default: 'default' and the queues of the tasks)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs the 'prometheus' extra)",
    )
    worker.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the metrics listen on (default 127.0.0.1; 0.0.0.0 for remote scrapes)",
    )
    worker.add_argument(
        "--listen-dsn",
        default=os.environ.get("SCHEDULER_LISTEN_DSN"),
        metavar="DSN",
        help="DSN of the PostgreSQL server itself for the replica's LISTEN connection, when"
        " --dsn points at PgBouncer in transaction mode (also $SCHEDULER_LISTEN_DSN)",
    )
    worker.add_argument(
        "--http-allowed-host",
        dest="http_allowed_hosts",
        action="append",
        default=None,
        metavar="HOST",
        help="host the built-in HTTP task may call (repeatable; also"
        " $SCHEDULER_HTTP_ALLOWED_HOSTS, comma-separated; default: none, HTTP jobs are off)",
    )
    return parser


#: The settings of `Scheduler(...)` a worker takes as flags (--lease-time ...) or from the
#: environment (SCHEDULER_LEASE_TIME ...); the flag wins. Defaults are the library's.
_WORKER_SETTINGS: dict[str, type] = {
    "max_concurrent_jobs": int,
    "lease_time": float,
    "heartbeat_interval": float,
    "poll_interval": float,
    "shutdown_grace": float,
    "claim_batch_size": int,
    "reap_interval": float,
    "retention": float,
    "prune_interval": float,
    "unrunnable_job_timeout": float,
    "orphan_retries": int,
    "max_payload_bytes": int,
    "listener_check_interval": float,
    "listener_check_timeout": float,
    "cancel_wait": float,
    "process_pool_size": int,
    "process_max_jobs_per_child": int,
    "process_max_memory_per_child_mb": int,
}


def add_replica_settings(worker: argparse.ArgumentParser) -> None:
    for name, kind in _WORKER_SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        variable = f"SCHEDULER_{name.upper()}"
        unit = "seconds" if kind is float else "a whole number"
        aliases = ["--concurrency"] if name == "max_concurrent_jobs" else []
        worker.add_argument(
            flag,
            *aliases,
            dest=name,
            type=_setting(name, kind),
            default=os.environ.get(variable),  # argparse parses a string default too
            metavar="N",
            help=f"{unit}; also ${variable}"
            + (" ('none' to disable)" if name == "unrunnable_job_timeout" else ""),
        )


def _setting(name: str, kind: type) -> Any:
    def parse(text: str) -> Any:
        if name == "unrunnable_job_timeout" and text.strip().lower() == "none":
            return _DISABLED
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be {'a number of seconds' if kind is float else 'a whole number'},"
                f" got {text!r}"
            ) from None

    parse.__name__ = name  # argparse names the setting in its error message
    return parse


#: asyncpg's own default for statement_cache_size.
ASYNCPG_STATEMENT_CACHE = 100


def _cache_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 0:
        raise argparse.ArgumentTypeError(
            f"statement_cache_size must be a whole number >= 0, got {text!r}"
        )
    return size


_DISABLED = object()  # unrunnable_job_timeout=None, as given on the command line


def worker_settings(options: argparse.Namespace) -> dict[str, Any]:
    """The Scheduler keyword arguments given as flags or environment variables (and the
    queues given with --queue)."""
    settings = {}
    for name in _WORKER_SETTINGS:
        value = getattr(options, name, None)
        if value is not None:
            settings[name] = None if value is _DISABLED else value
    if getattr(options, "queues", None):
        settings["queues"] = options.queues
    hosts = getattr(options, "http_allowed_hosts", None)
    if hosts is None and os.environ.get("SCHEDULER_HTTP_ALLOWED_HOSTS"):
        hosts = os.environ["SCHEDULER_HTTP_ALLOWED_HOSTS"].split(",")
    if hosts:
        settings["http_allowed_hosts"] = [host.strip() for host in hosts if host.strip()]
    if getattr(options, "listen_dsn", None):
        settings["listen_dsn"] = options.listen_dsn
    return settings


async def run(options: argparse.Namespace) -> int:
    schema = validate_schema_name(options.schema or default_schema())
    cache_size = options.statement_cache_size
    pool = await asyncpg.create_pool(
        options.dsn,
        min_size=1,
        max_size=4 + (getattr(options, "max_concurrent_jobs", 0) or 10),
        # An idle worker keeps only what it uses (docs/scale.md, Connections).
        max_inactive_connection_lifetime=60.0,
        statement_cache_size=ASYNCPG_STATEMENT_CACHE if cache_size is None else cache_size,
    )
    assert pool is not None
    try:
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
            async with pool.acquire() as conn:
                await migrations.check_schema(conn, schema)  # says to run `migrate`
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
                print(f"no schedule {options.schedule_id!r}", file=sys.stderr)
                return 1
            print(f"{options.command}d {options.schedule_id}")
        elif options.command in FLOW_COMMANDS:
            return await run_flow_command(Scheduler(pool, schema=schema), options)
        elif options.command == "worker":
            await run_worker(
                pool,
                schema,
                options.imports,
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
    elif options.command == "retry":
        await operations.retry_job(pool, schema, options.job_id, options.delay)
        print(f"retrying {options.job_id}")
    elif options.command == "retry-failed":
        retried = await operations.retry_failed_jobs(
            pool, schema, options.task, options.since, options.delay
        )
        print(f"retrying {retried} job(s)")
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


async def print_job(scheduler: Scheduler, options: argparse.Namespace) -> int:
    """`show`: the job and its attempts as JSON; `attempts`: its history, one line each."""
    job = await scheduler.get_job(options.job_id)
    if job is None:
        print(f"no job {options.job_id!r}", file=sys.stderr)
        return 1
    history = [dataclasses.asdict(a) for a in await scheduler.get_attempts(options.job_id)]
    if options.command == "show":
        print(_json({**dataclasses.asdict(job), "attempt_history": history}, indent=2))
    elif options.json:
        print(_json(history, indent=2))
    else:
        for entry in history:
            # A traceback's last line names the exception: enough for one line.
            error = (entry["error"] or "").strip().splitlines()[-1:] or [""]
            print(
                f"#{entry['attempt']}  {entry['outcome'].value:<11}  {entry['finished_at']}"
                f"  {entry['hostname'] or '-'}  {entry['worker_id'] or '-'}  {error[0]}".rstrip()
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
    return 0


def print_jobs(found: list[dict[str, Any]], *, as_json: bool) -> None:
    for job in found:
        if as_json:
            print(json.dumps(job, default=str))
            continue
        error = (job["last_error"] or "").replace("\n", " ")
        error = f"  {error[:60]}…" if len(error) > 60 else f"  {error}" if error else ""
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


async def run_flow_command(scheduler: Scheduler, options: argparse.Namespace) -> int:
    """queues, pause-queue, resume-queue, queue-limits, task-limits."""
    if options.command == "queues":
        queues = await scheduler.queue_stats()
        tasks = await scheduler.task_limits()
        if options.json:
            print(
                _json(
                    {
                        "queues": [dataclasses.asdict(q) for q in queues],
                        "tasks": [dataclasses.asdict(t) for t in tasks],
                    }
                )
            )
            return 0
        print(f"{'queue':<30} {'due':>7} {'future':>7} {'running':>7} {'state':<7} limits")
        for queue in queues:
            state = "paused" if queue.paused else "active"
            print(
                f"{queue.queue:<30} {queue.due_now:>7} {queue.future:>7} {queue.running:>7}"
                f" {state:<7} {_describe_limits(queue.limits)}"
            )
        for task in tasks:
            print(f"task {task.task_name}: {task.running} running, {_describe_limits(task.limits)}")
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
        print(f"limits of {target}: {_describe_limits(limits)}")
    return 0


def _describe_limits(limits: Limits) -> str:
    parts = []
    if limits.concurrency_limit is not None:
        parts.append(f"concurrency {limits.concurrency_limit}")
    if limits.rate_limit is not None:
        parts.append(f"rate {limits.rate_limit}/{limits.rate_period:g}s burst {limits.rate_burst}")
    return ", ".join(parts) or "none"


async def run_worker(
    pool: asyncpg.Pool[Any],
    schema: str,
    imports: Sequence[str],
    settings: dict[str, Any],
    metrics_at: tuple[str, int] | None = None,
) -> None:
    sys.path.insert(0, os.getcwd())
    for module in imports:
        try:
            importlib.import_module(module)  # its @task decorators register the tasks
        except ImportError as exc:
            raise OperationError(
                f"cannot import --import module {module!r}: {exc}; check the name and that it"
                " is importable from the current directory or PYTHONPATH"
            ) from None
    if not default_registry.names():
        raise OperationError(
            "no tasks to run: pass --import MODULE naming a module with @task functions"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    extensions = []
    stop_metrics = None
    if metrics_at is not None:
        from scheduler.metrics import PrometheusMetrics

        metrics = PrometheusMetrics()
        extensions.append(metrics)
        stop_metrics = metrics.serve(metrics_at[1], metrics_at[0])
        print(f"metrics on http://{metrics_at[0]}:{metrics_at[1]}/metrics", flush=True)
    try:
        async with Scheduler(pool, schema=schema, extensions=extensions, **settings) as scheduler:
            print(
                f"worker {scheduler.worker_id} running on queues {', '.join(scheduler.queues)};"
                " SIGTERM or Ctrl-C stops it gracefully",
                flush=True,
            )
            await stop.wait()
    finally:
        if stop_metrics is not None:
            stop_metrics()


async def run_dashboard(pool: asyncpg.Pool[Any], schema: str, options: argparse.Namespace) -> None:
    async with pool.acquire() as conn:
        await migrations.check_schema(conn, schema)  # says to run `migrate`
    try:
        from scheduler.dashboard.serve import serve
    except ImportError as exc:
        raise OperationError(
            f"the dashboard needs the 'dashboard' extra ({exc}): pip install 'pgcadence[dashboard]'"
        ) from None
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


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(run(options))
    except (SchedulerError, OSError, asyncpg.PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
