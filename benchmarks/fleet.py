"""W8, many replicas (issue 21, item 3): N replica processes on one database.

For each fleet size, in a database of its own (so the server's counters hold only the
fleet's work): N `benchmarks.worker` processes (max_concurrent_jobs=10, a pool of at most
`--pool-max` connections each) start and idle; then `--jobs` due no-op jobs are inserted
in one statement and drained. Reported per fleet size:

* idle: transactions/s per replica and rows read/s per replica (pg_stat_database
  xact_commit + xact_rollback and tup_returned + tup_fetched deltas over `--idle` seconds,
  after a warm-up past the 10 s stats flush of idle backends), and the server
  connections the idle fleet holds. Flat per-replica figures as N grows mean nothing a
  replica does grows with the fleet (heartbeats, sweeps, queue-depth reads);
* drain: total jobs/s from the insert to the last success, the peak connections, the
  p99 of every claim's wall time during the drain (all replicas), and duplicates: jobs
  started more than once (attempts > 1: no-ops never fail) and attempt-history rows
  beyond one per job.

    python -m benchmarks.fleet [--replicas 1,4,16,32] [--jobs 20000] [--idle 30]
        [--pool-max 2] [--warm-up 20] [--poll-only] [--pgbouncer POOL_SIZE]
        [--poll-interval SECONDS] [--no-reset] [--jit-off]

`--poll-only` runs every replica with `Scheduler(listen=False)` (no LISTEN connection; it
polls every second) on a pool of `--pool-max` (default 1 then). `--pgbouncer N` puts a
private PgBouncer in transaction mode (tests/support/pgbouncer.py, `default_pool_size`
N) between the replicas and the server, with `statement_cache_size=0`; replicas that
listen then listen directly (`listen_dsn`). Connections are always counted on the server
(pg_stat_activity rows of the fleet's database, sampled every 0.2 s): through PgBouncer
that is its server pool plus any direct listeners.

A fleet that would not fit in max_connections (with 10 connections to spare for the
machine's other users) is skipped and reported as such. Prints one JSON line per fleet size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg

from benchmarks.backlog import percentile
from benchmarks.run import DSN, ROOT, fresh_scheduler, insert_due_jobs, poll_until_drained
from scheduler.postgres.sql import quote_identifier
from tests.support.pgbouncer import PgBouncer

SCHEMA = "scheduler"
SPARE_CONNECTIONS = 10


async def counters(pool: asyncpg.Pool[Any], database: str) -> dict[str, int]:
    row = await pool.fetchrow(
        "SELECT xact_commit + xact_rollback AS transactions, tup_returned + tup_fetched AS rows"
        " FROM pg_stat_database WHERE datname = $1",
        database,
    )
    assert row is not None
    return dict(row)


async def connections(pool: asyncpg.Pool[Any], database: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
    )
    return count


def start(
    dsn: str, n: int, pool_max: int, folder: str, extra: list[str]
) -> list[subprocess.Popen[str]]:
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.worker",
                dsn,
                SCHEMA,
                "--pool-max",
                str(pool_max),
                "--claims-out",
                os.path.join(folder, f"claims-{i}.json"),
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    for process in processes:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "READY":
            raise RuntimeError("a replica failed to start")
    return processes


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=120)
        if process.stdout is not None:
            process.stdout.close()


def server_budget(n: int, pool_max: int, poll_only: bool, bouncer_pool: int | None) -> int:
    """The most server connections the fleet may open."""
    if bouncer_pool is None:
        return n * pool_max
    return bouncer_pool + (0 if poll_only else n)


async def fleet(
    admin: asyncpg.Pool[Any],
    n: int,
    jobs: int,
    idle: float,
    pool_max: int,
    warm_up: float,
    *,
    poll_only: bool = False,
    bouncer_pool: int | None = None,
    poll_interval: float | None = None,
    no_reset: bool = False,
    jit_off: bool = False,
) -> dict[str, Any]:
    limit = int(await admin.fetchval("SHOW max_connections"))
    used = int(await admin.fetchval("SELECT count(*) FROM pg_stat_activity"))
    record: dict[str, Any] = {
        "workload": "W8 fleet",
        "replicas": n,
        "pool_max": pool_max,
        "poll_only": poll_only,
        "pgbouncer_pool": bouncer_pool,
        "poll_interval": poll_interval,
        "pool_reset": not no_reset,
        "database_jit": "off" if jit_off else "server default",
    }
    budget = server_budget(n, pool_max, poll_only, bouncer_pool)
    if used + budget + SPARE_CONNECTIONS > limit:
        return record | {"skipped": f"{budget} server connections + {used} in use > {limit}"}
    database = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {quote_identifier(database)}")
    if jit_off:
        # asyncpg turns JIT off around its type introspection with a session setting, which
        # behind PgBouncer in transaction mode lands on another server session than the
        # introspection query: JIT-compiled, that query took seconds under load.
        await admin.execute(f"ALTER DATABASE {quote_identifier(database)} SET jit = off")
    dsn = DSN.rsplit("/", 1)[0] + "/" + database
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    processes: list[subprocess.Popen[str]] = []
    bouncer: PgBouncer | None = None
    try:
        await fresh_scheduler(pool, SCHEMA)
        extra = ["--poll-only"] if poll_only else []
        if poll_interval is not None:
            extra += ["--poll-interval", str(poll_interval)]
        if no_reset:
            extra += ["--no-reset"]
        replica_dsn = dsn
        if bouncer_pool is not None:
            bouncer = PgBouncer(dsn, pool_size=bouncer_pool)
            bouncer.start()
            replica_dsn = bouncer.dsn
            extra += ["--statement-cache-size", "0"]
            if not poll_only:
                extra += ["--listen-dsn", dsn]
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            processes = start(replica_dsn, n, pool_max, folder, extra)
            record["start_seconds"] = round(time.perf_counter() - began, 1)
            await asyncio.sleep(warm_up)  # past the 10 s stats flush of idle backends
            before = await counters(admin, database)
            await asyncio.sleep(idle)
            after = await counters(admin, database)
            idle_connections = await connections(admin, database)
            # Our own two connections' reads are in the counters: a handful per snapshot.
            record |= {
                "idle_seconds": idle,
                "warm_up_seconds": warm_up,
                "idle_transactions_per_s_per_replica": round(
                    (after["transactions"] - before["transactions"]) / idle / n, 3
                ),
                "idle_rows_read_per_s_per_replica": round(
                    (after["rows"] - before["rows"]) / idle / n, 1
                ),
                "idle_connections": idle_connections - 1,  # minus this benchmark's own
            }
            peak = 0

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, await connections(admin, database) - 1)
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            inserted = time.time()
            started = time.perf_counter()
            await insert_due_jobs(pool, SCHEMA, jobs)
            await poll_until_drained(pool, SCHEMA)
            elapsed = time.perf_counter() - started
            finished = time.time()
            sampler.cancel()
            q = quote_identifier(SCHEMA)
            duplicates = await pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE attempts > 1")
            extra_history = await pool.fetchval(
                f"SELECT count(*) - count(DISTINCT job_id) FROM {q}.job_attempts"
            )
            succeeded = await pool.fetchval(
                f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'"
            )
            # Every job exactly once: one attempt, one history row, per job.
            history = await pool.fetchrow(
                f"SELECT count(*) AS rows, count(DISTINCT job_id) AS jobs FROM {q}.job_attempts"
            )
            assert history is not None
            workers = await pool.fetchval(f"SELECT count(DISTINCT worker_id) FROM {q}.job_attempts")
            stop(processes)
            processes = []
            claims: list[float] = []
            for i in range(n):
                with open(os.path.join(folder, f"claims-{i}.json")) as timings:
                    claims += [ms for at, ms in json.load(timings) if inserted <= at <= finished]
        record |= {
            "jobs": jobs,
            "succeeded": succeeded,
            "jobs_per_s": round(jobs / elapsed, 1),
            "duplicates": duplicates,
            "extra_attempt_rows": extra_history,
            "history_rows": history["rows"],
            "jobs_with_history": history["jobs"],
            "exactly_once": succeeded == jobs == history["rows"] == history["jobs"]
            and duplicates == 0,
            "replicas_that_ran_jobs": workers,
            "peak_connections": peak,
            "claims_during_drain": len(claims),
            "claim_ms_p50": round(percentile(claims, 0.5), 2) if claims else None,
            "claim_ms_p99": round(percentile(claims, 0.99), 2) if claims else None,
        }
        return record
    finally:
        if processes:
            stop(processes)
        if bouncer is not None:
            bouncer.stop()
        await pool.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_identifier(database)} WITH (FORCE)")


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", default="1,4,16,32")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--pool-max", type=int, default=0, help="2; 1 with --poll-only")
    parser.add_argument("--warm-up", type=float, default=20.0, help="seconds before idling")
    parser.add_argument("--poll-only", action="store_true", help="Scheduler(listen=False)")
    parser.add_argument("--pgbouncer", type=int, default=None, metavar="POOL_SIZE")
    parser.add_argument("--poll-interval", type=float, default=None, help="the library's")
    parser.add_argument("--no-reset", action="store_true", help="pools skip the reset query")
    parser.add_argument("--jit-off", action="store_true", help="ALTER DATABASE ... SET jit = off")
    options = parser.parse_args()
    pool_max = options.pool_max or (1 if options.poll_only else 2)
    admin = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
    assert admin is not None
    try:
        for n in (int(r) for r in options.replicas.split(",")):
            record = await fleet(
                admin,
                n,
                options.jobs,
                options.idle,
                pool_max,
                options.warm_up,
                poll_only=options.poll_only,
                bouncer_pool=options.pgbouncer,
                poll_interval=options.poll_interval,
                no_reset=options.no_reset,
                jit_off=options.jit_off,
            )
            record["load_average"] = os.getloadavg()
            record["commit"] = commit()
            print(json.dumps(record), flush=True)
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
