"""The command line: every command, option and help text, and the parsers of option values
(durations, times, JSON) that turn a bad value into one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from scheduler import __version__
from scheduler.errors import ConfigurationError, SchedulerError
from scheduler.models import ConflictResolution, JobPriority, JobStatus
from scheduler.operations import (
    DURATION_FORMS,
    FINISHED,
    OperationError,
    PointInTime,
    parse_duration,
    parse_point_in_time,
)
from scheduler.tasks import validate_task_name
from scheduler.validation import validate_queue_name

DESCRIPTION = """\
Operate a `scheduler` deployment: migrate the schema, enqueue and inspect jobs, cancel,
retry and purge them, manage recurring schedules, pause queues and set limits, check a
deployment (doctor), serve the dashboard, and run a worker."""

EPILOG = """\
connection: --dsn, else $SCHEDULER_DSN, else libpq's PG* variables (PGHOST, PGUSER, ...).
  A DSN is a URL (postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME) or libpq keywords
  ('host=HOST port=5432 dbname=DBNAME user=USER').
schema: --schema, else $SCHEDULER_SCHEMA, else "scheduler".
durations: 30s, 15m, 2h, 7d, 1w, or plain seconds (90, 0.5), in every option.
exit codes: 0 success; 1 a runtime failure (database unreachable, login refused, database
  missing, a server error, a job or schedule not found, a failed doctor check); 2 a usage
  error (bad option or DSN, a module that does not import, a value the library refuses,
  a schema that is not migrated). Errors are one line on stderr.
'scheduler COMMAND --help' describes each command."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2), not the usage
    block followed by the error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def _typed(parse: Any, name: str) -> Any:
    """An argparse `type=` that turns a library error into argparse's own (one line)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (OperationError, SchedulerError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the value in its error message
    return convert


duration = _typed(parse_duration, "duration")
task_name = _typed(validate_task_name, "task")
queue_name = _typed(lambda text: validate_queue_name(text, ConfigurationError), "queue")
point_in_time = _typed(parse_point_in_time, "time")


def _json_value(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON ({exc}): e.g. {_EXAMPLES[kind]}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{what} must be a JSON {kind.__name__}, e.g. {_EXAMPLES[kind]}")
    return value


_EXAMPLES: dict[type, str] = {list: """'["a", 1]'""", dict: """'{"key": "value"}'"""}
json_args = _typed(lambda text: _json_value(text, list, "--args"), "args")
json_kwargs = _typed(lambda text: _json_value(text, dict, "--kwargs"), "kwargs")


def _instant(text: str) -> Any:
    from datetime import datetime

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-29T12:00:00+00:00"
        ) from None
    if at.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone; add one (e.g. +00:00)")
    return at


instant = _typed(_instant, "time")


def _priority(text: str) -> JobPriority:
    if text.upper() in JobPriority.__members__:
        return JobPriority[text.upper()]
    try:
        return JobPriority.coerce(int(text))
    except ValueError:
        names = ", ".join(f"{p.name.lower()} ({p.value})" for p in JobPriority)
        raise ValueError(f"unknown priority {text!r}; use one of {names}") from None


priority = _typed(_priority, "priority")


def _conflict(text: str) -> ConflictResolution:
    try:
        return ConflictResolution[text.upper()]
    except KeyError:
        raise ValueError(
            f"unknown conflict policy {text!r}; use raise, ignore or replace"
        ) from None


conflict = _typed(_conflict, "conflict")


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


port = _typed(_bounded_int(1, 65535), "port")
positive = _typed(_bounded_int(1, 2**31 - 1), "number")
non_negative = _typed(_bounded_int(0, 2**31 - 1), "number")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scheduler",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SCHEDULER_DSN"),
        help="PostgreSQL DSN, a URL or libpq keywords (default: $SCHEDULER_DSN, else PG*)",
    )
    parser.add_argument(
        "--statement-cache-size",
        type=non_negative,
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
        default=_log_level(os.environ.get("SCHEDULER_LOG_LEVEL", "INFO")),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default: $SCHEDULER_LOG_LEVEL or INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply pending schema migrations")
    commands.add_parser("status", help="schema version, jobs per status, live workers")
    doctor = commands.add_parser(
        "doctor",
        help="check a deployment (connection, migrations, roles, LISTEN/NOTIFY, PgBouncer,"
        " clock skew, connection budget) and say what to fix; exit 1 if a check fails",
    )
    doctor.add_argument(
        "--runtime-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="a role replicas log in as, to check for grant_runtime_role()'s grants"
        " (repeatable; default: the role connecting)",
    )
    doctor.add_argument(
        "--producer-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="a role that only enqueues, to check for grant_producer_role()'s grants",
    )
    doctor.add_argument("--replicas", type=positive, default=1, help="replicas planned (default 1)")
    doctor.add_argument(
        "--pool-size",
        type=positive,
        default=14,
        help="connections per replica (default 14, the pool of `scheduler worker`)",
    )
    _add_enqueue(commands)
    jobs = commands.add_parser("jobs", help="list jobs, newest change first")
    jobs.add_argument(
        "--status",
        action="append",
        default=[],
        choices=[status.value for status in JobStatus],
        help="status; repeatable",
    )
    jobs.add_argument(
        "--task", action="append", default=[], help="exact task name (module:function); repeatable"
    )
    jobs.add_argument("--since", type=point_in_time, help="changed at/after T: ISO time or 2h ago")
    jobs.add_argument("--until", type=point_in_time, help="changed before T: ISO time or 2h ago")
    jobs.add_argument("--limit", type=positive, default=100, help="at most N jobs (default 100)")
    jobs.add_argument("--json", action="store_true", help="one JSON object per line")
    retry = commands.add_parser("retry", help="run a failed or cancelled job again")
    retry.add_argument("job_id")
    retry.add_argument("--delay", type=duration, default=0.0, help="run after DURATION")
    retry_failed = commands.add_parser(
        "retry-failed", help="run again every job that failed (of a task, since a time)"
    )
    retry_failed.add_argument("--task", help="only jobs of this exact task name")
    retry_failed.add_argument(
        "--since", type=point_in_time, help="failed at or after T (default: ever)"
    )
    retry_failed.add_argument("--delay", type=duration, default=0.0, help="run after DURATION")
    purge = commands.add_parser("purge", help="delete finished jobs, in batches")
    purge.add_argument(
        "--before", type=point_in_time, required=True, help="finished before T: ISO or 7d ago"
    )
    purge.add_argument("--status", action="append", choices=FINISHED, help="default: all three")
    purge.add_argument("--batch-size", type=positive, default=1000, help="rows per transaction")
    stats = commands.add_parser("stats", help="per-task depth, lag and outcomes; fleet health")
    stats.add_argument("--json", action="store_true", help="one JSON document")
    show = commands.add_parser("show", help="print one job and its attempts as JSON")
    show.add_argument("job_id")
    attempts = commands.add_parser("attempts", help="one job's attempt history")
    attempts.add_argument("job_id")
    attempts.add_argument("--json", action="store_true", help="one JSON document")
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
        limits.add_argument("--rate", type=int, help="at most N starts per --per DURATION")
        limits.add_argument("--per", type=duration, default=1.0, help="rate period (default 1s)")
        limits.add_argument("--burst", type=int, default=1, help="starts allowed at once")
    _add_dashboard(commands)
    _add_worker(commands)
    return parser


def _listens(value: object) -> bool:
    """--no-listen (False), or $SCHEDULER_LISTEN (a string; unset listens): true-ish
    listens, false-ish polls, anything else is a usage error rather than a silent
    default."""
    if not isinstance(value, str):
        return value is not False
    text = value.strip().lower()
    if text in ("", "1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise OperationError(f"$SCHEDULER_LISTEN must be true or false, got {value!r}")


def _log_level(text: str) -> str:
    return text.upper() if text.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"


def _add_enqueue(commands: Any) -> None:
    enqueue = commands.add_parser(
        "enqueue",
        help="schedule one run of a task by name; prints the job id",
        description="Schedule one run of TASK (module:function, as @task names it) with the"
        " checks of Scheduler.schedule(); prints the job id. Due now unless --at or --delay.",
    )
    enqueue.add_argument(
        "task", metavar="TASK", type=task_name, help="task name, e.g. myapp.jobs:send_email"
    )
    enqueue.add_argument("--args", type=json_args, default=[], help="""JSON array: '["a", 1]'""")
    enqueue.add_argument(
        "--kwargs", type=json_kwargs, default=None, help="""JSON object: '{"key": "value"}'"""
    )
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", type=instant, help="run at this ISO 8601 time (with a zone)")
    when.add_argument("--delay", type=duration, help="run after DURATION")
    enqueue.add_argument("--job-id", help="custom job id (default: generated)")
    enqueue.add_argument(
        "--priority", type=priority, default=JobPriority.NORMAL, help="low|normal|high|critical"
    )
    enqueue.add_argument(
        "--queue", type=queue_name, help="queue (default: the task's, else 'default')"
    )
    enqueue.add_argument("--max-retries", type=non_negative, help="retries after a failure")
    enqueue.add_argument(
        "--conflict",
        type=conflict,
        default=ConflictResolution.RAISE,
        help="when --job-id exists: raise (default), ignore or replace",
    )


def _add_dashboard(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="serve the web dashboard (needs the 'dashboard' extra)"
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument("--port", type=port, default=8080, help="port (default 8080)")
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


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a scheduler replica until SIGTERM",
        description="Run a scheduler replica with the @task functions of the --import"
        " modules until SIGTERM or SIGINT, then shut down gracefully. Durations: 30s, 15m,"
        " 2h, 7d, 1w or plain seconds.",
    )
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
        type=port,
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
        "--no-listen",
        dest="listen",
        action="store_false",
        default=os.environ.get("SCHEDULER_LISTEN"),  # read by worker_settings()
        help="open no LISTEN connection: poll every --poll-interval (1 s unless given), so"
        " the replica runs on one server connection with --pool-size 1 (also"
        " $SCHEDULER_LISTEN=false)",
    )
    worker.add_argument(
        "--pool-size",
        type=positive,
        default=os.environ.get("SCHEDULER_POOL_SIZE"),
        metavar="N",
        help="the worker's pool: at most N connections (default: --concurrency + 4; also"
        " $SCHEDULER_POOL_SIZE); may be 1 with --no-listen",
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


#: The settings of `Scheduler(...)` a worker takes as flags (--lease-time ...) or from the
#: environment (SCHEDULER_LEASE_TIME ...); the flag wins. Defaults are the library's.
#: `float` settings are durations.
WORKER_SETTINGS: dict[str, type] = {
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
    for name, kind in WORKER_SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        variable = f"SCHEDULER_{name.upper()}"
        aliases = ["--concurrency"] if name == "max_concurrent_jobs" else []
        worker.add_argument(
            flag,
            *aliases,
            dest=name,
            type=_setting(name, kind),
            default=os.environ.get(variable),  # argparse parses a string default too
            metavar="DURATION" if kind is float else "N",
            help=f"Scheduler({name}=...); also ${variable}; default: the library's"
            + (" ('none' to disable)" if name == "unrunnable_job_timeout" else ""),
        )


def _setting(name: str, kind: type) -> Any:
    def parse(text: str) -> Any:
        if name == "unrunnable_job_timeout" and text.strip().lower() == "none":
            return DISABLED
        if kind is float:
            try:
                return parse_duration(text)
            except OperationError:
                raise argparse.ArgumentTypeError(
                    f"{name} must be {DURATION_FORMS}, got {text!r}"
                ) from None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text!r}"
            ) from None

    parse.__name__ = name  # argparse names the setting in its error message
    return parse


DISABLED = object()  # unrunnable_job_timeout=None, as given on the command line


def worker_settings(options: argparse.Namespace) -> dict[str, Any]:
    """The Scheduler keyword arguments given as flags or environment variables (and the
    queues given with --queue)."""
    settings = {}
    for name in WORKER_SETTINGS:
        value = getattr(options, name, None)
        if value is not None:
            settings[name] = None if value is DISABLED else value
    if getattr(options, "queues", None):
        settings["queues"] = options.queues
    hosts = getattr(options, "http_allowed_hosts", None)
    if hosts is None and os.environ.get("SCHEDULER_HTTP_ALLOWED_HOSTS"):
        hosts = os.environ["SCHEDULER_HTTP_ALLOWED_HOSTS"].split(",")
    if hosts:
        settings["http_allowed_hosts"] = [host.strip() for host in hosts if host.strip()]
    if getattr(options, "listen_dsn", None):
        settings["listen_dsn"] = options.listen_dsn
    if not _listens(getattr(options, "listen", None)):
        settings["listen"] = False
    return settings


__all__ = ["PointInTime", "build_parser", "worker_settings"]
