"""The same workloads run by peers, when installed (`pip install -e '.[bench]'`).

Each peer runs in a throwaway database of its own, with its documented defaults except
where a setting is stated beside its result. A peer that cannot do a workload, or is not
installed, is reported as such rather than left out silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from scheduler.postgres.sql import quote_identifier

if TYPE_CHECKING:
    from benchmarks.run import Report

CONCURRENCY = 10
T = TypeVar("T")


#: Start minus due time (seconds) of the peers' timed jobs in this process.
PEER_LATENCIES: list[float] = []


async def peer_noop() -> None:
    return None


async def peer_timed(due_epoch: float) -> None:
    PEER_LATENCIES.append(time.time() - due_epoch)


async def run_all(
    pool: asyncpg.Pool[Any],
    report: Report,
    only: set[str],
    *,
    n: int,
    e: int,
    repeats: int,
    fan_out: list[int],
) -> None:
    peers = (
        ("pgqueuer", pgqueuer_workloads),
        ("procrastinate", procrastinate_workloads),
        ("apscheduler", apscheduler_workloads),
    )
    for module, workloads in peers:
        try:
            __import__(module)
        except ImportError:
            print(f'{{"peer": "{module}", "skipped": "not installed (pip install -e .[bench])"}}')
            continue
        if workloads is pgqueuer_workloads:
            await pgqueuer_workloads(pool, report, only, n=n, e=e, repeats=repeats, fan_out=fan_out)
        else:
            await workloads(pool, report, only, n=n, e=e, repeats=repeats)


def report_peer_latency(report: Report, system: str, runs: list[list[float]]) -> None:
    from benchmarks.run import percentile

    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
        report.add(f"W3 start latency, {label}", system, "ms", [percentile(r, q) for r in runs])


def due_times(count: int, lead: float = 1.0) -> list[datetime]:
    """W3's due times: 25 ms apart from `lead` seconds ahead (1 s, as for us, unless the
    peer needs longer than that just to enqueue them)."""
    first = datetime.now(timezone.utc) + timedelta(seconds=lead)
    return [first + timedelta(milliseconds=25 * k) for k in range(count)]


async def wait_for(condition: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("a peer did not finish its workload")
        await asyncio.sleep(0.01)


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
    pool: asyncpg.Pool[Any],
    report: Report,
    only: set[str],
    *,
    n: int,
    e: int,
    repeats: int,
    fan_out: list[int] = (),  # type: ignore[assignment]
) -> None:
    """PgQueuer at its documented defaults (`QueueManager.run()`: batch_size 10, no
    max_concurrent_tasks), one asyncpg connection each, as its README shows."""
    from benchmarks.run import DSN, PGQUEUER, W2_CPU, percentile

    if "W1" in only:
        report.add(
            f"W1 enqueue {e} one at a time",
            PGQUEUER,
            "jobs/s",
            [await _pgq_enqueue(pool, DSN, e, batch=1) for _ in range(repeats)],
        )
        report.add(
            f"W1 bulk enqueue {n}, batches of 1000",
            PGQUEUER,
            "jobs/s",
            [await _pgq_enqueue(pool, DSN, n, batch=1000) for _ in range(repeats)],
        )
    if "W2" in only:
        runs = [await _pgq_drain(pool, DSN, n) for _ in range(repeats)]
        report.add(f"W2 drain {n} no-op jobs", PGQUEUER, "jobs/s", [rate for rate, _ in runs])
        report.add(f"{W2_CPU}, W2", PGQUEUER, "µs/job", [cpu for _, cpu in runs])
    if "W3" in only:
        latencies = [await _pgq_latency(pool, DSN) for _ in range(repeats)]
        for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
            report.add(
                f"W3 start latency, {label}",
                PGQUEUER,
                "ms",
                [percentile(run, q) for run in latencies],
            )
    if "W4" in only:
        for processes in fan_out:
            report.add(
                f"W4 fan-out, {processes} process(es), {n} jobs",
                PGQUEUER,
                "jobs/s",
                [await _pgq_fan_out(pool, DSN, processes, n) for _ in range(repeats)],
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


async def _pgq_drain(pool: asyncpg.Pool[Any], dsn: str, jobs: int) -> tuple[float, float]:
    from pgqueuer.types import QueueExecutionMode

    from benchmarks.run import process_cpu

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

            cpu, started = process_cpu(), time.perf_counter()
            await manager.run(mode=QueueExecutionMode.drain)
            elapsed, cpu = time.perf_counter() - started, process_cpu() - cpu
            return jobs / elapsed, cpu / jobs * 1e6
        finally:
            await worker.close()
            await conn.close()


async def _pgq_fan_out(pool: asyncpg.Pool[Any], dsn: str, processes: int, jobs: int) -> float:
    """W4 for PgQueuer: `processes` worker processes (benchmarks.pgqueuer_worker, at the
    defaults) drain `jobs` jobs enqueued once they are all listening."""
    import subprocess
    import sys

    async with throwaway_database(pool, dsn) as database:
        conn, queries = await _pgq_setup(database)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.pgqueuer_worker", database],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "READY":
                    raise RuntimeError("a PgQueuer worker did not start")
            started = time.perf_counter()
            for offset in range(0, jobs, 1000):
                size = min(1000, jobs - offset)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
            while True:
                if not await conn.fetchval("SELECT count(*) FROM pgqueuer"):
                    break
                await asyncio.sleep(0.05)
            return jobs / (time.perf_counter() - started)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=30)
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

            running = asyncio.create_task(manager.run())
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


# -- procrastinate ----------------------------------------------------------------------


def _procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    app.task(name="noop")(peer_noop)
    app.task(name="timed")(peer_timed)
    return app


async def procrastinate_workloads(
    pool: asyncpg.Pool[Any], report: Report, only: set[str], *, n: int, e: int, repeats: int
) -> None:
    from benchmarks.run import DSN

    system = "procrastinate 3.10 (concurrency=10, defaults)"

    async def run(workload: Callable[[Any], Awaitable[T]]) -> T:
        async with throwaway_database(pool, DSN) as database:
            app = _procrastinate_app(database)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                return await workload(app)

    async def enqueue_one(app: Any) -> float:
        started = time.perf_counter()
        for _ in range(e):
            await app.tasks["noop"].defer_async()
        return e / (time.perf_counter() - started)

    async def enqueue_bulk(app: Any) -> float:
        started = time.perf_counter()
        for offset in range(0, n, 1000):
            await app.tasks["noop"].batch_defer_async(*({} for _ in range(min(1000, n - offset))))
        return n / (time.perf_counter() - started)

    async def drain(app: Any) -> float:
        for offset in range(0, n, 1000):
            await app.tasks["noop"].batch_defer_async(*({} for _ in range(min(1000, n - offset))))
        started = time.perf_counter()
        await app.run_worker_async(
            concurrency=CONCURRENCY, wait=False, install_signal_handlers=False
        )
        return n / (time.perf_counter() - started)

    async def latency(app: Any, count: int = 200) -> list[float]:
        PEER_LATENCIES.clear()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)
        )
        for due in due_times(count):
            await (
                app.tasks["timed"].configure(schedule_at=due).defer_async(due_epoch=due.timestamp())
            )
        await wait_for(lambda: len(PEER_LATENCIES) >= count)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        return sorted(ms * 1000 for ms in PEER_LATENCIES)

    if "W1" in only:
        report.add(
            f"W1 enqueue {e} one at a time",
            "procrastinate 3.10",
            "jobs/s",
            [await run(enqueue_one) for _ in range(repeats)],
        )
        report.add(
            f"W1 bulk enqueue {n}, batches of 1000",
            "procrastinate 3.10 (batch_defer_async)",
            "jobs/s",
            [await run(enqueue_bulk) for _ in range(repeats)],
        )
    if "W2" in only:
        report.add(
            f"W2 drain {n} no-op jobs", system, "jobs/s", [await run(drain) for _ in range(repeats)]
        )
    if "W3" in only:
        report_peer_latency(report, system, [await run(latency) for _ in range(repeats)])


# -- APScheduler 4 ----------------------------------------------------------------------


async def apscheduler_workloads(
    pool: asyncpg.Pool[Any], report: Report, only: set[str], *, n: int, e: int, repeats: int
) -> None:
    from apscheduler import AsyncScheduler, JobReleased
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.triggers.date import DateTrigger
    from sqlalchemy.ext.asyncio import create_async_engine

    from benchmarks.run import DSN

    system = "APScheduler 4.0.0a6 (SQLAlchemy store, local broker, max_concurrent_jobs=10)"
    timed_system = f"{system}; W3 jobs due from 4 s ahead"
    drain_jobs = min(n, 1_000)  # under a hundred jobs/s here: keep a run under a minute

    async def run(workload: Callable[[Any], Awaitable[T]]) -> T:
        async with throwaway_database(pool, DSN) as database:
            engine = create_async_engine(database.replace("postgresql://", "postgresql+asyncpg://"))
            # Its asyncpg event broker fails under anyio 4.16 (start_soon from a LISTEN
            # callback); one process needs no broker, so the default local one is used.
            scheduler = AsyncScheduler(SQLAlchemyDataStore(engine), max_concurrent_jobs=CONCURRENCY)
            try:
                async with scheduler:
                    return await workload(scheduler)
            finally:
                await engine.dispose()

    async def enqueue_one(scheduler: Any) -> float:
        started = time.perf_counter()
        for _ in range(e):
            await scheduler.add_job(peer_noop)
        return e / (time.perf_counter() - started)

    async def drain(scheduler: Any) -> float:
        released = 0

        def count(_event: Any) -> None:
            nonlocal released
            released += 1

        for _ in range(drain_jobs):
            await scheduler.add_job(peer_noop)
        scheduler.subscribe(count, JobReleased)
        started = time.perf_counter()
        await scheduler.start_in_background()
        await wait_for(lambda: released >= drain_jobs)
        return drain_jobs / (time.perf_counter() - started)

    async def latency(scheduler: Any, count: int = 200) -> list[float]:
        PEER_LATENCIES.clear()
        # Adding 200 schedules takes it about 2 s, so they are due from 4 s ahead.
        for due in due_times(count, lead=4.0):
            await scheduler.add_schedule(peer_timed, DateTrigger(due), args=(due.timestamp(),))
        await scheduler.start_in_background()
        await wait_for(lambda: len(PEER_LATENCIES) >= count)
        return sorted(ms * 1000 for ms in PEER_LATENCIES)

    if "W1" in only:
        report.add(
            f"W1 enqueue {e} one at a time",
            "APScheduler 4.0.0a6 (add_job)",
            "jobs/s",
            [await run(enqueue_one) for _ in range(repeats)],
        )
        print('{"peer": "apscheduler", "W1 bulk": "no bulk enqueue API"}')
    if "W2" in only:
        report.add(
            f"W2 drain {n} no-op jobs",
            f"{system}, {drain_jobs} jobs",
            "jobs/s",
            [await run(drain) for _ in range(repeats)],
        )
    if "W3" in only:
        report_peer_latency(report, timed_system, [await run(latency) for _ in range(repeats)])
