"""The same workloads run by peers, when installed (`pip install -e '.[bench]'`).

Each peer runs in a throwaway database of its own, with its documented defaults except
where a setting is stated beside its result. A peer that cannot do a workload, or is not
installed, is reported as such rather than left out silently.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import asyncpg

from scheduler.postgres.sql import quote_identifier

if TYPE_CHECKING:
    from benchmarks.run import Report

CONCURRENCY = 10


async def run_all(
    pool: asyncpg.Pool[Any], report: Report, only: set[str], *, n: int, e: int, repeats: int
) -> None:
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        print('{"peer": "pgqueuer", "skipped": "not installed (pip install -e .[bench])"}')
        return
    await pgqueuer_workloads(pool, report, only, n=n, e=e, repeats=repeats)


@asynccontextmanager
async def throwaway_database(pool: asyncpg.Pool[Any], dsn: str) -> AsyncIterator[str]:
    name = f"bench_peer_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE DATABASE {quote_identifier(name)}")
    try:
        yield dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await pool.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")


# -- PgQueuer ---------------------------------------------------------------------------


async def pgqueuer_workloads(
    pool: asyncpg.Pool[Any], report: Report, only: set[str], *, n: int, e: int, repeats: int
) -> None:
    from benchmarks.run import DSN, percentile

    system = "PgQueuer 1.6 (batch_size=5, max_concurrent_tasks=10)"
    if "W1" in only:
        report.add(
            f"W1 enqueue {e} one at a time",
            "PgQueuer 1.6",
            "jobs/s",
            [await _pgq_enqueue(pool, DSN, e, batch=1) for _ in range(repeats)],
        )
        report.add(
            f"W1 bulk enqueue {n}, batches of 1000",
            "PgQueuer 1.6",
            "jobs/s",
            [await _pgq_enqueue(pool, DSN, n, batch=1000) for _ in range(repeats)],
        )
    if "W2" in only:
        report.add(
            f"W2 drain {n} no-op jobs",
            system,
            "jobs/s",
            [await _pgq_drain(pool, DSN, n) for _ in range(repeats)],
        )
    if "W3" in only:
        runs = [await _pgq_latency(pool, DSN) for _ in range(repeats)]
        for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
            report.add(
                f"W3 start latency, {label}", system, "ms", [percentile(run, q) for run in runs]
            )


async def _pgq_setup(dsn: str) -> tuple[asyncpg.Connection, Any]:
    from pgqueuer import Queries

    conn = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(conn)
    await queries.install()
    return conn, queries


async def _pgq_enqueue(pool: asyncpg.Pool[Any], dsn: str, jobs: int, *, batch: int) -> float:
    async with throwaway_database(pool, dsn) as database:
        conn, queries = await _pgq_setup(database)
        try:
            started = time.perf_counter()
            if batch == 1:
                for _ in range(jobs):
                    await queries.enqueue("noop", None)
            else:
                for offset in range(0, jobs, batch):
                    size = min(batch, jobs - offset)
                    await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
            return jobs / (time.perf_counter() - started)
        finally:
            await conn.close()


def _pgq_manager(conn: asyncpg.Connection) -> Any:
    from pgqueuer import Queries, QueueManager

    return QueueManager(Queries.from_asyncpg_connection(conn))


async def _pgq_drain(pool: asyncpg.Pool[Any], dsn: str, jobs: int) -> float:
    from pgqueuer.types import QueueExecutionMode

    async with throwaway_database(pool, dsn) as database:
        conn, queries = await _pgq_setup(database)
        worker = await asyncpg.connect(database)
        try:
            for offset in range(0, jobs, 1000):
                size = min(1000, jobs - offset)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
            manager = _pgq_manager(worker)

            @manager.entrypoint("noop")
            async def noop(job: Any) -> None:
                return None

            started = time.perf_counter()
            await manager.run(
                batch_size=CONCURRENCY // 2,
                max_concurrent_tasks=CONCURRENCY,
                mode=QueueExecutionMode.drain,
            )
            return jobs / (time.perf_counter() - started)
        finally:
            await worker.close()
            await conn.close()


async def _pgq_latency(pool: asyncpg.Pool[Any], dsn: str, count: int = 200) -> list[float]:
    latencies: list[float] = []
    async with throwaway_database(pool, dsn) as database:
        conn, queries = await _pgq_setup(database)
        worker = await asyncpg.connect(database)
        try:
            manager = _pgq_manager(worker)

            @manager.entrypoint("timed")
            async def timed(job: Any) -> None:
                latencies.append(time.time() - float(job.payload.decode()))
                if len(latencies) == count:
                    manager.shutdown.set()

            running = asyncio.create_task(
                manager.run(batch_size=CONCURRENCY // 2, max_concurrent_tasks=CONCURRENCY)
            )
            now = datetime.now(timezone.utc)
            first = now + timedelta(seconds=1)
            dues = [first + timedelta(milliseconds=25 * k) for k in range(count)]
            await queries.enqueue(
                ["timed"] * count,
                [str(due.timestamp()).encode() for due in dues],
                [0] * count,
                [due - datetime.now(timezone.utc) for due in dues],
            )
            await running
            return sorted(ms * 1000 for ms in latencies)
        finally:
            await worker.close()
            await conn.close()
