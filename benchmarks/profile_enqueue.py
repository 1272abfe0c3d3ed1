"""Where the CPU of one-at-a-time `schedule()` goes: enqueues `--jobs` no-op jobs in this
process, one await at a time, and prints the rate, the process CPU per job and, with
`--profile`, the top functions of a cProfile run.

    python -m benchmarks.profile_enqueue [--jobs 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import resource
import time
from typing import Any

import asyncpg

from benchmarks.run import DSN, drop, fresh_scheduler
from benchmarks.tasks import noop


async def measure(jobs: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=16)
    assert pool is not None
    scheduler = await fresh_scheduler(pool)
    try:
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(jobs):
            await scheduler.schedule(noop)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
        return {"jobs/s": round(jobs / wall), "cpu_us_per_job": round(cpu / jobs * 1e6, 1)}
    finally:
        await drop(pool, scheduler.config.schema)
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    options = parser.parse_args()
    profiler = cProfile.Profile() if options.profile else None
    print(asyncio.run(measure(options.jobs, profiler)))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(options.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
