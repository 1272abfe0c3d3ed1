"""What running a job in a child process or as an HTTP request costs, beside the same
no-op run on the event loop:

    python -m benchmarks.backends [--jobs 500] [--calls 300] [--pool-size 2]

1. direct: one call at a time with no database, median per call: an awaited no-op, the
   process pool's round trip to a warm child, the built-in HTTP task against a local
   uvicorn server (127.0.0.1), and the first call of a fresh pool (starting the child).
2. drain: `--jobs` due jobs of each kind on one replica (`max_concurrent_jobs` 10, pool
   size `--pool-size`), from start() to the last success: jobs per second and the time per
   job beyond the async no-op's.

Prints one JSON line per figure, then a Markdown table. Uses $SCHEDULER_DSN (default: the
local server) and a throwaway schema it drops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import asyncpg

from benchmarks.backend_tasks import async_noop, process_noop
from scheduler import HTTP_TASK, JobRequest, Scheduler, http_request
from scheduler.executors.http import HostAllowlist, perform_http_request
from scheduler.executors.process import ProcessPool
from scheduler.postgres.sql import quote_identifier
from scheduler.running_jobs import RunningJobs
from scheduler.store import ClaimedJob, Lease
from scheduler.tasks import TaskCatalog

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 10


@contextmanager
def local_http_server() -> Iterator[int]:
    """A minimal ASGI app under uvicorn on 127.0.0.1 that answers 200 "ok"."""
    import socket

    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the local HTTP server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def median_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(min(20, calls)):  # warm up
        await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fake_entry(running: RunningJobs) -> Any:
    lease = Lease("bench", uuid.uuid4(), 1)
    claimed = ClaimedJob(lease, "bench", "[]", "{}", max_retries=0, timeout=None)
    return running.add(claimed)


def new_pool() -> ProcessPool:
    return ProcessPool(
        1, max_jobs_per_child=None, max_memory_per_child=None, max_result_bytes=65536
    )


async def direct(calls: int, port: int) -> dict[str, float]:
    catalog = TaskCatalog()
    definition = catalog.resolve(process_noop)
    running = RunningJobs(1)
    entry = fake_entry(running)
    figures: dict[str, float] = {}
    figures["async no-op"] = await median_call(async_noop, calls)
    cold = []
    for _ in range(5):
        pool = new_pool()
        started = time.perf_counter()
        await pool.run(entry, definition, (), {})
        cold.append(time.perf_counter() - started)
        await pool.aclose()
    figures["process: first call (child start)"] = statistics.median(cold)
    pool = new_pool()
    figures["process: warm child"] = await median_call(
        lambda: pool.run(entry, definition, (), {}), calls
    )
    await pool.aclose()
    allowlist = HostAllowlist(["127.0.0.1"])
    url = f"http://127.0.0.1:{port}/"
    figures["http: GET 127.0.0.1"] = await median_call(
        lambda: perform_http_request(allowlist, url=url), calls
    )
    return figures


async def drain(pool: asyncpg.Pool[Any], jobs: int, pool_size: int, port: int) -> dict[str, float]:
    kinds: dict[str, tuple[Any, dict[str, Any]]] = {
        "async no-op": (async_noop, {}),
        "process no-op": (process_noop, {}),
        "http GET": (HTTP_TASK, http_request(f"http://127.0.0.1:{port}/")),
    }
    figures: dict[str, float] = {}
    for name, (func, kwargs) in kinds.items():
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        scheduler = Scheduler(
            pool,
            schema=schema,
            max_concurrent_jobs=CONCURRENCY,
            process_pool_size=pool_size,
            http_allowed_hosts=["127.0.0.1"],
            poll_interval=0.5,
        )
        try:
            await scheduler.migrate()
            if func is async_noop:
                scheduler.register(async_noop)
            await scheduler.schedule_many(JobRequest(func, kwargs=kwargs) for _ in range(jobs))
            started = time.perf_counter()
            async with scheduler:
                while True:
                    done = await pool.fetchval(
                        f"SELECT count(*) FROM {quote_identifier(schema)}.jobs"
                        " WHERE status = 'succeeded'"
                    )
                    if done >= jobs:
                        break
                    await anyio.sleep(0.01)
                figures[name] = time.perf_counter() - started
        finally:
            await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--pool-size", type=int, default=2)
    options = parser.parse_args()
    conditions = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "niceness": os.nice(0),
        "jobs": options.jobs,
        "calls": options.calls,
        "pool_size": options.pool_size,
        "max_concurrent_jobs": CONCURRENCY,
    }
    print(json.dumps({"conditions": conditions}))
    db = await asyncpg.create_pool(DSN, min_size=2, max_size=CONCURRENCY + 6)
    assert db is not None
    try:
        with local_http_server() as port:
            calls = await direct(options.calls, port)
            for name, seconds in calls.items():
                print(json.dumps({"direct": name, "median_ms": round(seconds * 1000, 3)}))
            drains = await drain(db, options.jobs, options.pool_size, port)
            for name, seconds in drains.items():
                print(
                    json.dumps({"drain": name, "seconds": round(seconds, 3), "jobs": options.jobs})
                )
    finally:
        await db.close()
    print("\n| measure | figure | beyond the async no-op |\n| --- | --- | --- |")
    base = calls["async no-op"]
    for name, seconds in calls.items():
        extra = "" if name == "async no-op" else f"+{(seconds - base) * 1000:.3f} ms"
        print(f"| direct call, median: {name} | {seconds * 1000:.3f} ms | {extra} |")
    per_job = {name: seconds / options.jobs for name, seconds in drains.items()}
    for name, seconds in per_job.items():
        extra = (
            ""
            if name == "async no-op"
            else f"+{(seconds - per_job['async no-op']) * 1000:.2f} ms/job"
        )
        print(
            f"| drain of {options.jobs}: {name} | {options.jobs / drains[name]:.0f} jobs/s"
            f" ({seconds * 1000:.2f} ms/job) | {extra} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
