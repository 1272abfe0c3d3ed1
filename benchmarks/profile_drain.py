"""Where the CPU of a W2 drain goes: drains `--jobs` due no-op jobs in this process and
prints the process CPU per job, and with `--profile` the top functions of a cProfile run
(cProfile roughly doubles the cost; read its shares, not its absolute times).

    python -m benchmarks.profile_drain [--jobs 10000] [--concurrency 10] [--profile] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import resource
import time
from typing import Any

import asyncpg

from benchmarks.run import DSN, drop, fresh_scheduler, insert_due_jobs, poll_until_drained
from scheduler.postgres.sql import quote_identifier


async def measure(jobs: int, concurrency: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=concurrency + 6)
    assert pool is not None
    scheduler = await fresh_scheduler(pool, max_concurrent_jobs=concurrency)
    schema = scheduler.config.schema
    try:
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if profiler:
            profiler.enable()
        async with scheduler:
            await poll_until_drained(pool, schema)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
        return {
            "jobs/s": round(jobs / wall),
            "cpu_us_per_job": round((user + system) / jobs * 1e6, 1),
            "user_us_per_job": round(user / jobs * 1e6, 1),
            "system_us_per_job": round(system / jobs * 1e6, 1),
        }
    finally:
        await drop(pool, schema)
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    options = parser.parse_args()
    profiler = cProfile.Profile() if options.profile else None
    work = measure(options.jobs, options.concurrency, profiler)
    if options.uvloop:
        import uvloop

        result = uvloop.run(work)
    else:
        result = asyncio.run(work)
    print(result)
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(options.top)
        print(out.getvalue().replace(os.getcwd() + "/", ""))


if __name__ == "__main__":
    main()
