"""Benchmarks for the README, each beside a raw-SQL floor (and peers, when installed):

    W1 enqueue (one at a time, and in bulk)      W4 fan-out over 1, 3, 4 processes
    W2 drain of 10,000 due no-op jobs            W5 W2 and W3 beside 2M rows (1M future, 1M done)
    W3 start latency (idle), W3b (under load)    W6 idle queries/s and memory of a replica
    FLOW claim cost with each kind of flow-control limit on (benchmarks/flow.py; only
         when named: --only FLOW)

    python -m benchmarks.run [--jobs 10000] [--repeats 3] [--only W2,W3] [--no-peers]

Prints one JSON line per result, then Markdown tables (results, then targets). Uses
$SCHEDULER_DSN (default: the local server), throwaway schemas it drops after, and for W6
and the peers throwaway databases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import asyncpg

from benchmarks.tasks import LATENCIES, noop, record_latency
from scheduler import JobRequest, Scheduler
from scheduler.ids import new_job_id
from scheduler.postgres.sql import quote_identifier
from scheduler.tasks import task_name_for

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_schema() -> str:
    return f"bench_{uuid.uuid4().hex[:8]}"


async def fresh_scheduler(
    pool: asyncpg.Pool[Any], schema: str | None = None, **settings: Any
) -> Scheduler:
    settings.setdefault("max_concurrent_jobs", CONCURRENCY)
    scheduler = Scheduler(pool, schema=schema or new_schema(), **settings)
    await scheduler.migrate()
    scheduler.register(noop)
    scheduler.register(record_latency)
    return scheduler


async def insert_due_jobs(pool: asyncpg.Pool[Any], schema: str, jobs: int) -> None:
    """`jobs` no-op jobs due now, in one statement (as a producer's bulk load would), with
    the ids the scheduler generates (time-ordered UUIDv7)."""
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs (job_id, task_name)"
        " SELECT unnest($2::text[]), $1",
        task_name_for(noop),
        [new_job_id() for _ in range(jobs)],
    )


async def unfinished_due_jobs(pool: asyncpg.Pool[Any], schema: str) -> int:
    """Due pending plus running jobs: index scans only, cheap beside a 2M-row table."""
    q = quote_identifier(schema)
    count: int = await pool.fetchval(
        f"SELECT (SELECT count(*) FROM {q}.jobs WHERE status = 'pending'"
        f" AND execution_time <= now()) + (SELECT count(*) FROM {q}.jobs"
        " WHERE status = 'running')"
    )
    return count


async def poll_until_drained(pool: asyncpg.Pool[Any], schema: str) -> None:
    # Every 50 ms: often enough to time a drain of seconds within a few percent, rarely
    # enough that the polling is not part of the cost measured in the same process.
    while True:
        if not await unfinished_due_jobs(pool, schema):
            return
        await asyncio.sleep(0.05)


class WorkerProcess:
    """`benchmarks.worker` in its own process: started, measured, stopped."""

    def __init__(self, dsn: str, schema: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", dsn, schema, *options],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "READY":
            raise RuntimeError("a benchmark worker failed to start")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()


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


async def raw_copy_into_jobs(pool: asyncpg.Pool[Any], jobs: int, batch: int) -> float:
    """COPY straight into the scheduler's own jobs table (its indexes and NOTIFY trigger,
    no conflict handling): what the table itself costs, apart from the enqueue code."""
    scheduler = await fresh_scheduler(pool)
    name = task_name_for(noop)
    try:
        async with pool.acquire() as conn:
            started = time.perf_counter()
            for offset in range(0, jobs, batch):
                rows = [(str(uuid.uuid4()), name) for _ in range(min(batch, jobs - offset))]
                await conn.copy_records_to_table(
                    "jobs",
                    schema_name=scheduler.config.schema,
                    records=rows,
                    columns=["job_id", "task_name"],
                )
            return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, scheduler.config.schema)


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


async def raw_insert_into_jobs(pool: asyncpg.Pool[Any], jobs: int) -> float:
    """One INSERT per job straight into the scheduler's jobs table (its indexes and NOTIFY
    trigger): what a single enqueue costs the table, apart from the enqueue code."""
    scheduler = await fresh_scheduler(pool)
    table = f"{quote_identifier(scheduler.config.schema)}.jobs"
    name = task_name_for(noop)
    try:
        started = time.perf_counter()
        for _ in range(jobs):
            await pool.execute(
                f"INSERT INTO {table} (job_id, task_name) VALUES ($1, $2)", str(uuid.uuid4()), name
            )
        return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, scheduler.config.schema)


async def drain(
    pool: asyncpg.Pool[Any], jobs: int, schema: str | None = None, concurrency: int = CONCURRENCY
) -> tuple[float, float]:
    """W2: one in-process scheduler drains `jobs` due no-op jobs. Returns jobs/s and the
    process's CPU per job (µs, user + system, over the drain). With `schema` (W5) the
    schema is kept; otherwise a fresh one is dropped after."""
    scheduler = await fresh_scheduler(pool, schema, max_concurrent_jobs=concurrency)
    name = scheduler.config.schema
    try:
        await insert_due_jobs(pool, name, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(name)}.jobs")
        cpu, started = process_cpu(), time.perf_counter()
        async with scheduler:
            await poll_until_drained(pool, name)
        elapsed, cpu = time.perf_counter() - started, process_cpu() - cpu
        return jobs / elapsed, cpu / jobs * 1e6
    finally:
        if schema is None:
            await drop(pool, name)


def process_cpu() -> float:
    """User plus system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def raw_drain(pool: asyncpg.Pool[Any], jobs: int) -> float:
    """The floor: 10 connections, each deleting batches of 10 with SKIP LOCKED (no job
    runs, nothing is recorded)."""
    async with raw_queue(pool) as (schema, table):
        queue = f"{quote_identifier(schema)}.{table}"
        await pool.execute(
            f"INSERT INTO {queue} (task, args) SELECT 't', '[]' FROM generate_series(1, $1)", jobs
        )
        await pool.execute(f"ANALYZE {queue}")
        statement = (
            f"DELETE FROM {queue} WHERE id IN (SELECT id FROM {queue} ORDER BY id"
            " LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING id, task, args"
        )

        async def consume(conn: asyncpg.Connection[Any]) -> None:
            while await conn.fetch(statement):
                pass

        connections = [await asyncpg.connect(DSN) for _ in range(CONCURRENCY)]
        try:
            started = time.perf_counter()
            await asyncio.gather(*(consume(conn) for conn in connections))
            return jobs / (time.perf_counter() - started)
        finally:
            for conn in connections:
                await conn.close()


async def latency(
    pool: asyncpg.Pool[Any],
    count: int = 200,
    schema: str | None = None,
    background_rate: float = 0.0,
) -> list[float]:
    """W3: `count` jobs due 25 ms apart from 1 s ahead; start minus due time (ms), one
    process, one clock. W3b: meanwhile a producer adds no-op jobs due now at
    `background_rate` jobs/s for the same scheduler to run."""
    LATENCIES.clear()
    scheduler = await fresh_scheduler(pool, schema)
    try:
        async with scheduler, anyio.create_task_group() as background:
            if background_rate:
                background.start_soon(_background_load, scheduler, background_rate)
            first = datetime.now(timezone.utc) + timedelta(seconds=1)
            await scheduler.schedule_many(
                JobRequest(record_latency, execution_time=due, args=(due.timestamp(),))
                for due in (first + timedelta(milliseconds=25 * n) for n in range(count))
            )
            await poll_until(lambda: _length(LATENCIES), count)
            background.cancel_scope.cancel()
        return sorted(ms * 1000 for ms in LATENCIES)
    finally:
        if schema is None:
            await drop(pool, scheduler.config.schema)


async def _background_load(scheduler: Scheduler, rate: float) -> None:
    """Enqueue no-op jobs at `rate` per second, in a batch every 50 ms."""
    tick = 0.05
    owed = 0.0
    while True:
        owed += rate * tick
        batch, owed = int(owed), owed - int(owed)
        if batch:
            await scheduler.schedule_many(JobRequest(noop) for _ in range(batch))
        await asyncio.sleep(tick)


async def fan_out(pool: asyncpg.Pool[Any], processes: int, jobs: int) -> dict[str, float]:
    """W4: `processes` worker processes drain `jobs` due jobs; jobs/s, and duplicate
    executions (a job claimed twice would show attempts > 1: no-ops never fail)."""
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    workers = [WorkerProcess(DSN, schema) for _ in range(processes)]
    try:
        started = time.perf_counter()
        await insert_due_jobs(pool, schema, jobs)
        await poll_until_drained(pool, schema)
        elapsed = time.perf_counter() - started
        duplicates = await pool.fetchval(
            f"SELECT count(*) FROM {quote_identifier(schema)}.jobs WHERE attempts > 1"
        )
        succeeded = await pool.fetchval(
            f"SELECT count(*) FROM {quote_identifier(schema)}.jobs WHERE status = 'succeeded'"
        )
        assert succeeded == jobs, f"{succeeded} of {jobs} succeeded"
        return {"rate": jobs / elapsed, "duplicates": duplicates, "rss_mb": workers[0].rss_mb()}
    finally:
        for worker in workers:
            worker.stop()
        await drop(pool, schema)


async def big_table(pool: asyncpg.Pool[Any], future: int, finished: int) -> str:
    """W5's schema: `future` pending jobs due tomorrow or later, `finished` succeeded."""
    scheduler = await fresh_scheduler(pool)
    q = quote_identifier(scheduler.config.schema)
    fills = (
        (future, "(job_id, task_name, execution_time)",
         "'future-' || n, $1, now() + interval '1 day' + n * interval '1 second'"),
        (finished, "(job_id, task_name, status, attempts, started_at, finished_at)",
         "'done-' || n, $1, 'succeeded', 1, now(), now()"),
    )  # fmt: skip
    chunk = 250_000
    for rows, columns, values in fills:
        for offset in range(0, rows, chunk):
            await pool.execute(
                f"INSERT INTO {q}.jobs {columns} SELECT {values}"
                " FROM generate_series($2::int, $3::int) AS n",
                task_name_for(noop),
                offset,
                min(offset + chunk, rows) - 1,
            )
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")
    return scheduler.config.schema


async def idle_cost(pool: asyncpg.Pool[Any], seconds: float, *options: str) -> dict[str, float]:
    """W6: transactions per second an idle replica sends, counted by the server in a
    database of its own (so nothing else is counted), over `seconds` after a warm-up;
    `options` go to the worker (`--metrics`: with Prometheus metrics and their reads)."""
    database = f"bench_idle_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE DATABASE {quote_identifier(database)}")
    dsn = DSN.rsplit("/", 1)[0] + "/" + database
    try:
        worker = WorkerProcess(dsn, "scheduler", *options)
        await asyncio.sleep(12)  # past the server's 10 s stats flush interval for idle backends
        before = await _transactions(pool, database)
        rss = worker.rss_mb()
        await asyncio.sleep(seconds)
        worker.stop()  # an exiting backend flushes its counters
        await asyncio.sleep(1.5)
        after = await _transactions(pool, database)
        return {"queries_per_s": (after - before) / seconds, "rss_mb": rss}
    finally:
        await pool.execute(f"DROP DATABASE IF EXISTS {quote_identifier(database)} WITH (FORCE)")


async def _transactions(pool: asyncpg.Pool[Any], database: str) -> int:
    count: int = await pool.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    return count


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


class Report:
    """Collects results: one JSON line each as they come, tables at the end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, workload: str, system: str, unit: str, values: list[float], **extra: Any) -> None:
        row = {
            "workload": workload,
            "system": system,
            "unit": unit,
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "repeats": len(values),
            **extra,
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def median(self, workload: str, system: str, suffix: str = "") -> float | None:
        """The median of the first result whose workload starts with `workload` (and ends
        with `suffix`) for `system`."""
        for row in self.rows:
            name = row["workload"]
            if name.startswith(workload) and name.endswith(suffix) and row["system"] == system:
                return float(row["median"])
        return None

    def markdown(self) -> str:
        lines = ["| workload | system | median | min-max |", "|---|---|---|---|"]
        for row in self.rows:
            extra = f" ({row['note']})" if row.get("note") else ""
            lines.append(
                f"| {row['workload']} | {row['system']}{extra} | {row['median']} {row['unit']}"
                f" | {row['min']}-{row['max']} |"
            )
        return "\n".join(lines)


def targets(report: Report) -> str:
    """Issue 10's targets, each as measured in this run."""
    m = report.median
    checks: list[tuple[str, float | None, str, bool | None]] = []

    def ratio(name: str, ours: float | None, other: float | None, want: float) -> None:
        value = None if ours is None or not other else ours / other
        checks.append((name, value, f">= {want}", None if value is None else value >= want))

    def at_most(name: str, value: float | None, limit: float) -> None:
        checks.append((name, value, f"<= {limit}", None if value is None else value <= limit))

    w2 = m("W2", "scheduler")
    ratio("W2 / PgQueuer W2 (defaults)", w2, m("W2", PGQUEUER), 2.0)
    ratio("W2 / raw floor", w2, m("W2", RAW_DRAIN), 0.4)
    ratio(
        "W2 at max_concurrent_jobs=100 / raw floor", m("W2", SCHEDULER_100), m("W2", RAW_DRAIN), 0.6
    )
    at_most("W2 client CPU per job (µs)", m(W2_CPU, "scheduler"), 50)
    bulk = m("W1 bulk", "scheduler.schedule_many")
    ratio("W1 bulk / PgQueuer bulk", bulk, m("W1 bulk", PGQUEUER), 1.5)
    ratio("W1 bulk / raw COPY", bulk, m("W1 bulk", "raw COPY"), 0.5)
    single = m("W1 enqueue", "scheduler")
    ratio("W1 single schedule() / PgQueuer", single, m("W1 enqueue", PGQUEUER), 1.2)
    ratio("W1 single schedule() / raw INSERT via pool", single, m("W1 enqueue", "raw INSERT"), 0.85)
    for processes in (3, 4):
        workload = f"W4 fan-out, {processes} process"
        ratio(
            f"W4 {processes} processes / PgQueuer",
            m(workload, "scheduler"),
            m(workload, PGQUEUER),
            1.5,
        )
    ratio("W5 drain / W2 drain", m("W5 drain", "scheduler"), w2, 0.9)
    at_most("W3 p99 idle (ms)", m("W3 start latency, p99", "scheduler"), 5)
    at_most(
        "W3b p99 at half load (ms)", m("W3b start latency under load", "scheduler", ", p99"), 20
    )
    at_most("W6 idle queries/s per replica", m("W6 idle", "scheduler"), 1)
    lines = ["| target | measured | wanted | met |", "|---|---|---|---|"]
    for name, value, wanted, met in checks:
        shown = "not run" if value is None else f"{value:.2f}"
        verdict = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {shown} | {wanted} | {verdict} |")
    return "\n".join(lines)  # fmt: skip


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


RAW_DRAIN = "raw floor: 10 connections, DELETE…SKIP LOCKED LIMIT 10"
SCHEDULER_100 = "scheduler, max_concurrent_jobs=100"
PGQUEUER = "PgQueuer 1.6 (defaults)"
W2_CPU = "client CPU per job"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--enqueue-jobs", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="W5: rows of each kind")
    parser.add_argument("--fan-out", default="1,3,4", help="W4: process counts")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--only", default="W1,W2,W3,W3b,W4,W5,W6", help="workloads to run")
    parser.add_argument("--no-peers", action="store_true", help="skip peers even if installed")
    parser.add_argument(
        "--report",
        metavar="JSONL",
        help="print the tables of an earlier run from its JSON lines, without running",
    )
    options = parser.parse_args()
    if options.report:
        report = Report()
        with open(options.report) as lines:
            report.rows = [json.loads(line) for line in lines if line.startswith('{"workload"')]
        print(report.markdown(), targets(report), sep="\n\n")
        return
    only = set(options.only.split(","))
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=CONCURRENCY + 6)
    assert pool is not None
    settings = {
        r["name"]: r["setting"]
        for r in await pool.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'fsync',"
            " 'synchronous_commit', 'shared_buffers', 'max_connections')"
        )
    }
    report = Report()
    n, e, r = options.jobs, options.enqueue_jobs, options.repeats

    if "W1" in only:
        one = f"W1 enqueue {e} one at a time"
        report.add(one, "scheduler", "jobs/s", await repeat(r, lambda: enqueue_one_by_one(pool, e)))
        report.add(
            one, "raw INSERT", "jobs/s", await repeat(r, lambda: raw_insert_one_by_one(pool, e))
        )
        report.add(
            one,
            "raw INSERT into the scheduler's jobs table",
            "jobs/s",
            await repeat(r, lambda: raw_insert_into_jobs(pool, e)),
        )
        bulk = f"W1 bulk enqueue {n}, batches of 1000"
        report.add(
            bulk,
            "scheduler.schedule_many",
            "jobs/s",
            await repeat(r, lambda: enqueue_in_bulk(pool, n, 1000)),
        )
        report.add(bulk, "raw COPY", "jobs/s", await repeat(r, lambda: raw_copy(pool, n, 1000)))
        report.add(
            bulk,
            "raw COPY into the scheduler's jobs table",
            "jobs/s",
            await repeat(r, lambda: raw_copy_into_jobs(pool, n, 1000)),
        )
    if "W2" in only:
        w2 = f"W2 drain {n} no-op jobs"
        drains = [await drain(pool, n) for _ in range(r)]
        report.add(w2, "scheduler", "jobs/s", [rate for rate, _ in drains])
        report.add(f"{W2_CPU}, W2", "scheduler", "µs/job", [cpu for _, cpu in drains])
        drains = [await drain(pool, n, concurrency=100) for _ in range(r)]
        report.add(w2, SCHEDULER_100, "jobs/s", [rate for rate, _ in drains])
        report.add(f"{W2_CPU}, W2", SCHEDULER_100, "µs/job", [cpu for _, cpu in drains])
        report.add(w2, RAW_DRAIN, "jobs/s", await repeat(r, lambda: raw_drain(pool, n)))
    if "W3" in only:
        report_latency(report, "W3 start latency", [await latency(pool) for _ in range(r)])
    if "W3b" in only:
        w2_rate = report.median("W2", "scheduler") or 2000.0
        runs = [await latency(pool, background_rate=w2_rate / 2) for _ in range(r)]
        report_latency(report, f"W3b start latency under load ({w2_rate / 2:.0f} jobs/s)", runs)
    if "W4" in only:
        for processes in map(int, options.fan_out.split(",")):
            results = [await fan_out(pool, processes, n) for _ in range(r)]
            report.add(
                f"W4 fan-out, {processes} process(es), {n} jobs",
                "scheduler",
                "jobs/s",
                [x["rate"] for x in results],
                duplicates=sum(x["duplicates"] for x in results),
                note=f"duplicates: {sum(int(x['duplicates']) for x in results)}",
            )
    if "W5" in only:
        big = options.big_rows
        schema = await big_table(pool, big, big)
        try:
            report.add(
                f"W5 drain {n} beside {big:,} future + {big:,} finished",
                "scheduler",
                "jobs/s",
                [(await drain(pool, n, schema))[0] for _ in range(r)],
            )
            report_latency(
                report, "W5 start latency", [await latency(pool, schema=schema) for _ in range(r)]
            )
            worker = WorkerProcess(DSN, schema)
            idle_rss = worker.rss_mb()
            await insert_due_jobs(pool, schema, n)
            await poll_until_drained(pool, schema)
            report.add(
                "W6 replica memory after a W5 drain",
                "scheduler",
                "MB",
                [worker.rss_mb()],
                note=f"{idle_rss:.1f} MB when it started",
            )
            worker.stop()
        finally:
            await drop(pool, schema)
    if "W6" in only:
        idle = await idle_cost(pool, options.idle_seconds)
        report.add(
            f"W6 idle, over {options.idle_seconds:.0f} s",
            "scheduler",
            "queries/s",
            [idle["queries_per_s"]],
        )
        report.add(
            "W6 replica memory, idle on an empty schema", "scheduler", "MB", [idle["rss_mb"]]
        )
        idle = await idle_cost(pool, options.idle_seconds, "--metrics")
        report.add(
            f"W6 idle, over {options.idle_seconds:.0f} s",
            "scheduler with Prometheus metrics (queue depth read every 5 s)",
            "queries/s",
            [idle["queries_per_s"]],
        )
    if "FLOW" in only:  # not in the default --only: `--only W2,FLOW` measures both
        from benchmarks import flow

        await flow.run_all(pool, report, n=n, repeats=r)
    if not options.no_peers:
        from benchmarks import peers

        await peers.run_all(
            pool,
            report,
            only,
            n=n,
            e=e,
            repeats=r,
            fan_out=list(map(int, options.fan_out.split(","))),
        )
    await pool.close()

    print(
        f"\nPostgreSQL {settings['server_version']}, fsync={settings['fsync']},"
        f" synchronous_commit={settings['synchronous_commit']},"
        f" shared_buffers={settings['shared_buffers']} (8kB pages);"
        f" max_concurrent_jobs={CONCURRENCY} (prefetch: the default) unless stated,"
        f" claim_batch_size=100, median of {r} runs\n"
    )
    print(report.markdown())
    print()
    print(targets(report))  # fmt: skip
    if "FLOW" in only:
        from benchmarks import flow

        print()
        print(flow.summary(report))


def report_latency(report: Report, workload: str, runs: list[list[float]]) -> None:
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
        report.add(f"{workload}, {label}", "scheduler", "ms", [percentile(run, q) for run in runs])


if __name__ == "__main__":
    asyncio.run(main())
