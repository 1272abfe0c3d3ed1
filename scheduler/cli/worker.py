"""`scheduler worker`: import the task modules, run a replica until SIGTERM/SIGINT, and log
at start what it serves."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from scheduler.executors.http import HTTP_TASK
from scheduler.limits import Limit
from scheduler.operations import OperationError
from scheduler.scheduler import Scheduler
from scheduler.tasks import default_registry

logger = logging.getLogger("scheduler.cli")


def check_can_listen(host: str, port: int, flag: str) -> None:
    """Refuse an address this process cannot listen on before anything starts (a server
    failing later would say so in a log line and an exit code of its own)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OperationError(f"cannot resolve {host!r} ({exc.strerror}): check {flag}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise OperationError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another {flag}"
            ) from None


def import_task_modules(imports: Sequence[str]) -> None:
    """Import every --import module (their @task decorators register the tasks); any error
    while importing one is a one-line usage error naming the module."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OperationError(
                f"cannot import --import module {module!r}: {exc}; check the name and that it"
                " is importable from the current directory or PYTHONPATH"
            ) from None
        except Exception as exc:  # the module itself fails: a syntax error, a raise...
            where = ""
            if isinstance(exc, SyntaxError):
                where = f" ({exc.filename}, line {exc.lineno})"
            raise OperationError(
                f"cannot import --import module {module!r}: it raised"
                f" {type(exc).__name__}: {' '.join(str(exc).split())}{where}"
            ) from None
    if not default_registry.names():
        raise OperationError(
            "no tasks to run: pass --import MODULE naming a module with @task functions"
        )


async def run_worker(
    pool: asyncpg.Pool[Any],
    schema: str,
    settings: dict[str, Any],
    metrics_at: tuple[str, int] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started: list[Scheduler] = []
    stopping_now: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        """The first signal drains (up to shutdown_grace); a second one stops at once:
        running jobs are cancelled and handed back to pending, as after the grace."""
        if not stop.is_set():
            stop.set()
        elif started and not stopping_now:
            logger.warning(
                "second signal: not waiting for %d running job(s); cancelling them and"
                " handing them back now",
                len(started[0].running_job_ids),
            )
            stopping_now.append(loop.create_task(started[0].shutdown(grace=0)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    extensions = []
    stop_metrics = None
    if metrics_at is not None:
        from scheduler.metrics import PrometheusMetrics

        metrics = PrometheusMetrics()
        extensions.append(metrics)
        try:
            stop_metrics = metrics.serve(metrics_at[1], metrics_at[0])
        except OSError as exc:
            raise OperationError(
                f"cannot serve metrics on {metrics_at[0]}:{metrics_at[1]} ({exc.strerror or exc}):"
                " choose another --metrics-port or --metrics-address"
            ) from None
        print(f"metrics on http://{metrics_at[0]}:{metrics_at[1]}/metrics", flush=True)
    try:
        async with Scheduler(pool, schema=schema, extensions=extensions, **settings) as scheduler:
            started.append(scheduler)
            logger.info("%s", await describe_worker(scheduler, pool))
            print(
                f"worker {scheduler.worker_id} running on queues {', '.join(scheduler.queues)};"
                " SIGTERM or Ctrl-C stops it gracefully, a second one at once",
                flush=True,
            )
            await stop.wait()
    finally:
        if stop_metrics is not None:
            stop_metrics()


async def describe_worker(scheduler: Scheduler, pool: asyncpg.Pool[Any]) -> str:
    """One readable block: who this worker is and what it serves under which limits."""
    config = scheduler.config
    tasks = sorted(default_registry.names())
    if config.http_allowed_hosts:
        tasks.append(HTTP_TASK)
    served = set(scheduler.queues)
    queue_limits = [
        f"{q.queue}{' (paused)' if q.paused else ''}: {describe_limits(q.all_limits)}"
        for q in await scheduler.queue_stats()
        if q.queue in served and (q.paused or q.all_limits)
    ]
    task_limits = [
        f"{t.task_name}: {describe_limits(t.all_limits)}"
        for t in await scheduler.task_limits()
        if t.task_name in tasks
    ]
    lines = [
        f"worker {scheduler.worker_id} started",
        f"  schema       {config.schema}",
        f"  tasks        {', '.join(tasks)}",
        f"  queues       {', '.join(scheduler.queues)}",
        f"  limits       {'; '.join(queue_limits + task_limits) or 'none'}",
        f"  concurrency  {config.max_concurrent_jobs} jobs at once, prefetch {config.prefetch}",
        f"  pool         {pool.get_size()} open, at most {pool.get_max_size()} connections",
    ]
    return "\n".join(lines)


def describe_limits(limits: tuple[Limit, ...]) -> str:
    return ", ".join(limit.describe() for limit in limits) or "none"
