"""Where the CPU of a W2 drain goes: drains `--jobs` due no-op jobs in this process and
prints the process CPU per job, and with `--profile` the top functions of a cProfile run
(cProfile roughly doubles the cost; read its shares, not its absolute times), and the
CPU per job split by component (a profiled second drain's shares of the first's CPU).

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


async def measure(
    jobs: int, concurrency: int, profiler: cProfile.Profile | None, prefetch: int | None = None
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=concurrency + 6)
    assert pool is not None
    scheduler = await fresh_scheduler(pool, max_concurrent_jobs=concurrency, prefetch=prefetch)
    schema = scheduler.config.schema
    try:
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        machine = machine_busy_seconds()
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if profiler:
            profiler.enable()
        async with scheduler:
            await poll_until_drained(pool, schema)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - wall
        machine = machine_busy_seconds() - machine
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
        return {
            "jobs/s": round(jobs / wall),
            "cpu_us_per_job": round((user + system) / jobs * 1e6, 1),
            "user_us_per_job": round(user / jobs * 1e6, 1),
            "system_us_per_job": round(system / jobs * 1e6, 1),
            # Every process's CPU over the drain (PostgreSQL's backends, mostly, beside
            # this one): what the machine spends per job, database included.
            "machine_cpu_us_per_job": round(machine / jobs * 1e6, 1),
        }
    finally:
        await drop(pool, schema)
        await pool.close()


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument("--prefetch", type=int, default=None, help="default: the slots")
    options = parser.parse_args()

    def run(profiler: cProfile.Profile | None) -> dict[str, Any]:
        work = measure(options.jobs, options.concurrency, profiler, options.prefetch)
        if options.uvloop:
            import uvloop

            # Typed in newer uvloop releases, Any in older ones: either assigns here.
            measured: dict[str, Any] = uvloop.run(work)
            return measured
        return asyncio.run(work)

    result = run(None)
    print(result)
    if options.profile:
        # A second, profiled drain: its shares split the first drain's CPU figure
        # (cProfile itself roughly doubles the time it measures).
        profiler = cProfile.Profile()
        run(profiler)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        print(breakdown(stats, options.jobs, result["cpu_us_per_job"]))
        stats.sort_stats("tottime").print_stats(options.top)
        print(out.getvalue().replace(os.getcwd() + "/", ""))


#: Where a function's own time is counted, by the file it is defined in (first match).
COMPONENTS = (
    ("the runner (scheduler/attempt_runner.py, running_jobs.py, interrupt.py, context.py)",
     ("scheduler/attempt_runner.py", "scheduler/running_jobs.py", "scheduler/interrupt.py",
      "scheduler/context.py")),
    ("the dispatcher, claim policy, batching and other services (scheduler/services/)",
     ("scheduler/services/",)),
    ("the store: statements, rows (scheduler/postgres/)", ("scheduler/postgres/",)),
    ("the rest of scheduler/ (serialization, tasks, ...)", ("scheduler/",)),
    ("asyncpg (protocol, encoding, pool)", ("asyncpg/",)),
    ("anyio and sniffio (cancel scopes, events, back-end look-ups)", ("anyio/", "sniffio/")),
    ("json, uuid, dataclasses, enum (standard library)",
     ("json/", "uuid.py", "dataclasses.py", "enum.py", "<string>")),
    ("socket send/recv (system calls)", ("method 'send'", "method 'recv'")),
    ("asyncio event loop, tasks, futures, timers", ("asyncio/", "_asyncio", "selectors.py",
                                                   "method 'run' of '_contextvars")),
)  # fmt: skip


def breakdown(stats: pstats.Stats, jobs: int, cpu_us: float) -> str:
    """Self time by component, as shares of the profiled time (idle waiting in epoll
    excluded), and as µs per job of the unprofiled CPU figure."""
    totals: dict[str, float] = {}
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path} {name}"
        if "method 'poll' of 'select.epoll'" in where:
            continue  # waiting, not working
        label = next((c for c, marks in COMPONENTS if any(m in where for m in marks)), "other")
        totals[label] = totals.get(label, 0.0) + row[2]  # tottime
    busy = sum(totals.values())
    lines = ["| component | share of busy time | ≈ µs per job |", "|---|---|---|"]
    for label, spent in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {spent / busy:.0%} | {cpu_us * spent / busy:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
