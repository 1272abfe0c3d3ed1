"""Benchmarks for the README: enqueue, drain and start latency, each beside a raw-SQL
floor where one makes sense. Prints one JSON line per result, then a Markdown table.

    python -m benchmarks.run [--jobs 10000] [--repeats 3]

Uses $SCHEDULER_DSN (default: the local server) and throwaway schemas it drops after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from scheduler import JobRequest, Scheduler
from scheduler.postgres.sql import quote_identifier
from scheduler.tasks import task_name_for

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 10
LATENCIES: list[float] = []


async def noop() -> None:
    return None


async def record_latency(due_epoch: float) -> None:
    LATENCIES.append(time.time() - due_epoch)


async def fresh_scheduler(pool: asyncpg.Pool[Any], **settings: Any) -> Scheduler:
    scheduler = Scheduler(
        pool, schema=f"bench_{uuid.uuid4().hex[:8]}", max_concurrent_jobs=CONCURRENCY, **settings
    )
    await scheduler.migrate()
    scheduler.register(noop)
    scheduler.register(record_latency)
    return scheduler


async def drop(pool: asyncpg.Pool[Any], schema: str) -> None:
    await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")


async def enqueue_one_by_one(pool: asyncpg.Pool[Any], jobs: int) -> float:
    scheduler = await fresh_scheduler(pool)
    try:
        started = time.perf_counter()
        for _ in range(jobs):
            await scheduler.schedule(noop)
        return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, scheduler.config.schema)


async def enqueue_in_bulk(pool: asyncpg.Pool[Any], jobs: int, batch: int) -> float:
    scheduler = await fresh_scheduler(pool)
    try:
        started = time.perf_counter()
        for offset in range(0, jobs, batch):
            await scheduler.schedule_many(
                [JobRequest(noop) for _ in range(min(batch, jobs - offset))]
            )
        return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, scheduler.config.schema)


async def raw_copy(pool: asyncpg.Pool[Any], jobs: int, batch: int) -> float:
    """The floor for bulk enqueue: COPY into a bare table, one COPY per batch."""
    async with raw_queue(pool) as (schema, table), pool.acquire() as conn:
        started = time.perf_counter()
        for offset in range(0, jobs, batch):
            rows = [("t", "[]")] * min(batch, jobs - offset)
            await conn.copy_records_to_table(
                table, schema_name=schema, records=rows, columns=["task", "args"]
            )
        return jobs / (time.perf_counter() - started)


@asynccontextmanager
async def raw_queue(pool: asyncpg.Pool[Any]) -> AsyncIterator[tuple[str, str]]:
    """A bare queue table for the raw-SQL floors; yields (schema, table)."""
    schema = f"bench_raw_{uuid.uuid4().hex[:8]}"
    q = quote_identifier(schema)
    await pool.execute(
        f"CREATE SCHEMA {q}; CREATE TABLE {q}.queue (id bigserial PRIMARY KEY,"
        " task text NOT NULL, args jsonb NOT NULL)"
    )
    try:
        yield schema, "queue"
    finally:
        await drop(pool, schema)


async def raw_insert_one_by_one(pool: asyncpg.Pool[Any], jobs: int) -> float:
    async with raw_queue(pool) as (schema, table):
        queue = f"{quote_identifier(schema)}.{table}"
        started = time.perf_counter()
        for _ in range(jobs):
            await pool.execute(f"INSERT INTO {queue} (task, args) VALUES ($1, $2)", "t", "[]")
        return jobs / (time.perf_counter() - started)


async def drain(pool: asyncpg.Pool[Any], jobs: int) -> float:
    scheduler = await fresh_scheduler(pool)
    q = quote_identifier(scheduler.config.schema)
    try:
        await pool.execute(
            f"INSERT INTO {q}.jobs (job_id, task_name) SELECT 'j' || n, $1"
            " FROM generate_series(1, $2) AS n",
            task_name_for(noop),
            jobs,
        )
        await pool.execute(f"ANALYZE {q}.jobs")
        started = time.perf_counter()
        async with scheduler:
            await poll_until(
                lambda: pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'"),
                jobs,
            )
        return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, scheduler.config.schema)


async def raw_drain(pool: asyncpg.Pool[Any], jobs: int) -> float:
    """The floor: one connection deleting batches of 100 with SKIP LOCKED."""
    async with raw_queue(pool) as (schema, table):
        queue = f"{quote_identifier(schema)}.{table}"
        await pool.execute(
            f"INSERT INTO {queue} (task, args) SELECT 't', '[]' FROM generate_series(1, $1)", jobs
        )
        started = time.perf_counter()
        done = 0
        async with pool.acquire() as conn:
            while done < jobs:
                rows = await conn.fetch(
                    f"DELETE FROM {queue} WHERE id IN (SELECT id FROM {queue} ORDER BY id"
                    " LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id, task, args"
                )
                done += len(rows)
        return jobs / (time.perf_counter() - started)


async def latency(pool: asyncpg.Pool[Any], count: int = 200) -> list[float]:
    """Idle scheduler; `count` jobs due 25 ms apart from 1 s ahead; start minus due (ms)."""
    LATENCIES.clear()
    scheduler = await fresh_scheduler(pool)
    try:
        async with scheduler:
            first = datetime.now(timezone.utc) + timedelta(seconds=1)
            for n in range(count):
                due = first + timedelta(milliseconds=25 * n)
                await scheduler.schedule(
                    record_latency, execution_time=due, args=(due.timestamp(),)
                )
            await poll_until(lambda: _length(LATENCIES), count)
        return sorted(ms * 1000 for ms in LATENCIES)
    finally:
        await drop(pool, scheduler.config.schema)


async def _length(values: list[float]) -> int:
    return len(values)


async def poll_until(count: Callable[[], Awaitable[int]], target: int) -> None:
    """Wait for a workload to finish (no deadline: a benchmark measures, it does not judge)."""
    while True:
        if await count() >= target:
            return
        await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def repeat(n: int, run: Callable[[], Awaitable[float]]) -> list[float]:
    return [await run() for _ in range(n)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--enqueue-jobs", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=CONCURRENCY + 6)
    assert pool is not None
    settings = {
        r["name"]: r["setting"]
        for r in await pool.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'fsync',"
            " 'synchronous_commit', 'shared_buffers', 'max_connections')"
        )
    }
    results: list[dict[str, Any]] = []

    def report(workload: str, system: str, unit: str, values: list[float]) -> None:
        row = {
            "workload": workload,
            "system": system,
            "unit": unit,
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "repeats": len(values),
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    n, e, r = options.jobs, options.enqueue_jobs, options.repeats
    report(
        f"W1 enqueue {e} one at a time",
        "scheduler",
        "jobs/s",
        await repeat(r, lambda: enqueue_one_by_one(pool, e)),
    )
    report(
        f"W1 enqueue {e} one at a time",
        "raw INSERT",
        "jobs/s",
        await repeat(r, lambda: raw_insert_one_by_one(pool, e)),
    )
    report(
        f"W1 bulk enqueue {n}, batches of 1000",
        "scheduler.schedule_many",
        "jobs/s",
        await repeat(r, lambda: enqueue_in_bulk(pool, n, 1000)),
    )
    report(
        f"W1 bulk enqueue {n}, batches of 1000",
        "raw COPY",
        "jobs/s",
        await repeat(r, lambda: raw_copy(pool, n, 1000)),
    )
    report(
        f"W2 drain {n} no-op jobs", "scheduler", "jobs/s", await repeat(r, lambda: drain(pool, n))
    )
    report(
        f"W2 drain {n} no-op jobs",
        "raw DELETE…SKIP LOCKED LIMIT 100",
        "jobs/s",
        await repeat(r, lambda: raw_drain(pool, n)),
    )
    lat = [await latency(pool) for _ in range(r)]
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
        report(f"W3 start latency, {label}", "scheduler", "ms", [percentile(run, q) for run in lat])
    await pool.close()

    print(
        f"\nPostgreSQL {settings['server_version']}, fsync={settings['fsync']},"
        f" synchronous_commit={settings['synchronous_commit']},"
        f" shared_buffers={settings['shared_buffers']} (8kB pages);"
        f" max_concurrent_jobs={CONCURRENCY}, claim_batch_size=100, median of {r} runs\n"
    )
    print("| workload | system | median | min-max |")
    print("|---|---|---|---|")
    for row in results:
        print(
            f"| {row['workload']} | {row['system']} | {row['median']} {row['unit']} |"
            f" {row['min']}-{row['max']} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
