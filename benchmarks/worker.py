"""A scheduler replica as its own process, for the multi-process benchmarks.

    python -m benchmarks.worker DSN SCHEMA [--concurrency 10]

Prints "READY <pid>" once started; SIGTERM shuts it down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import asyncpg

from benchmarks.tasks import noop, record_latency
from scheduler import Scheduler
from scheduler.metrics import PrometheusMetrics


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--metrics", action="store_true", help="with Prometheus metrics (their reads count)"
    )
    options = parser.parse_args()
    pool = await asyncpg.create_pool(options.dsn, min_size=2, max_size=options.concurrency + 4)
    assert pool is not None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler = Scheduler(
        pool,
        max_concurrent_jobs=options.concurrency,
        schema=options.schema,
        tasks=[noop, record_latency],
        extensions=[PrometheusMetrics()] if options.metrics else [],
    )
    async with scheduler:
        print("READY", flush=True)
        await stop.wait()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
