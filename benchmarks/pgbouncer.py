"""Issue 21's PgBouncer targets: through PgBouncer in transaction mode with `listen_dsn`,
due→start p99 ≤ 10 ms on an idle replica (W3), and a W2 drain at at least 0.8 of the direct one.

    python -m benchmarks.pgbouncer [--jobs 50000] [--count 200] [--repeats 3]

Starts a private PgBouncer (tests/support/pgbouncer.py: transaction mode, its own port and
config) in front of $SCHEDULER_DSN, runs each workload directly and through it, and prints
one JSON line per result, then the two ratios against the targets. Needs `pgbouncer`
installed (Debian: apt-get install pgbouncer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.profile_drain import machine_busy_seconds
from benchmarks.run import (
    CONCURRENCY,
    DSN,
    drop,
    fresh_scheduler,
    insert_due_jobs,
    percentile,
    poll_until,
    poll_until_drained,
)
from benchmarks.tasks import LATENCIES, record_latency
from scheduler import JobRequest
from scheduler.postgres.sql import quote_identifier
from tests.support.pgbouncer import PgBouncer

#: The client-side round trip (seconds) of every claim statement sent: the drain waits
#: for one claim at a time (benchmarks/timeline.py), so this is what a pooler's extra hop
#: costs it.
CLAIM_TRIPS: list[float] = []


async def time_claims(connection: asyncpg.Connection[Any]) -> None:
    def log(record: Any) -> None:
        if "claim_scope" in record.query or "claim_flow_jobs" in record.query:
            CLAIM_TRIPS.append(record.elapsed)

    connection.add_query_logger(log)


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc; 0 elsewhere)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bouncer_pid(bouncer: PgBouncer) -> int | None:
    pidfile = bouncer.dir / "pgbouncer.pid"
    return int(pidfile.read_text()) if pidfile.exists() else None


#: CPU seconds spent during the drains: the whole machine's and the pooler's.
CPU: dict[str, float] = {"machine": 0.0, "pgbouncer": 0.0}


async def drain(
    pool: asyncpg.Pool[Any], jobs: int, listen_dsn: str, pooler: int | None = None
) -> float:
    """W2: one scheduler drains `jobs` due no-op jobs; jobs/s. Adds the CPU the machine
    and the pooler process `pooler` spent meanwhile to CPU."""
    scheduler = await fresh_scheduler(pool, listen_dsn=listen_dsn)
    schema = scheduler.config.schema
    try:
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        machine, pooled = machine_busy_seconds(), process_cpu_seconds(pooler)
        started = time.perf_counter()
        async with scheduler:
            await poll_until_drained(pool, schema)
        elapsed = time.perf_counter() - started
        CPU["machine"] += machine_busy_seconds() - machine
        CPU["pgbouncer"] += process_cpu_seconds(pooler) - pooled
        return jobs / elapsed
    finally:
        await drop(pool, schema)


async def latency(pool: asyncpg.Pool[Any], count: int, listen_dsn: str) -> list[float]:
    """W3: `count` jobs due 25 ms apart from 1 s ahead on an idle replica; start minus due
    time in ms, sorted."""
    LATENCIES.clear()
    scheduler = await fresh_scheduler(pool, listen_dsn=listen_dsn)
    try:
        async with scheduler:
            first = datetime.now(timezone.utc) + timedelta(seconds=1)
            await scheduler.schedule_many(
                JobRequest(record_latency, execution_time=due, args=(due.timestamp(),))
                for due in (first + timedelta(milliseconds=25 * n) for n in range(count))
            )

            async def recorded() -> int:
                return len(LATENCIES)

            await poll_until(recorded, count)
        return sorted(seconds * 1000 for seconds in LATENCIES)
    finally:
        await drop(pool, scheduler.config.schema)


async def main(jobs: int, count: int, repeats: int) -> None:
    bouncer = PgBouncer(DSN, pool_size=CONCURRENCY)
    bouncer.start()
    results: dict[str, dict[str, float]] = {}
    try:
        for route, dsn in (("direct", DSN), ("pgbouncer", bouncer.dsn)):
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=CONCURRENCY + 4, statement_cache_size=0, init=time_claims
            )
            try:
                CLAIM_TRIPS.clear()
                CPU.update(machine=0.0, pgbouncer=0.0)
                pooler = bouncer_pid(bouncer) if route == "pgbouncer" else None
                rates = [await drain(pool, jobs, DSN, pooler) for _ in range(repeats)]
                trips = sorted(CLAIM_TRIPS)
                p99s = [percentile(await latency(pool, count, DSN), 0.99) for _ in range(repeats)]
            finally:
                await pool.close()
            results[route] = {
                "W2_jobs_per_s": statistics.median(rates),
                "W3_p99_ms": statistics.median(p99s),
            }
            claims = {
                "claims_per_job": round(len(trips) / (jobs * repeats), 4),
                "claim_round_trip_ms_median": round(trips[len(trips) // 2] * 1000, 2),
                # Every process on the machine (client, server, pooler) and the pooler alone,
                # per job drained: on two cores the pooler's share is taken from the others.
                "machine_cpu_us_per_job": round(CPU["machine"] / (jobs * repeats) * 1e6, 1),
                "pgbouncer_cpu_us_per_job": round(CPU["pgbouncer"] / (jobs * repeats) * 1e6, 1),
            }
            print(
                json.dumps({"route": route, "W2": rates, "W3_p99_ms": p99s, **claims}), flush=True
            )
    finally:
        bouncer.stop()
    ratio = results["pgbouncer"]["W2_jobs_per_s"] / results["direct"]["W2_jobs_per_s"]
    p99 = results["pgbouncer"]["W3_p99_ms"]
    print(f"W2 through PgBouncer / direct: {ratio:.2f} (target >= 0.8)")
    print(f"W3 p99 through PgBouncer with listen_dsn: {p99:.1f} ms (target <= 10 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 50,000: on a quiet machine a drain of 10,000 lasts about a second, and the pooler's
    # warm-up (its server connections opened on demand) then weighs on the ratio.
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.jobs, arguments.count, arguments.repeats))
