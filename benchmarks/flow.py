"""What flow control costs in the claim, with each kind of limit on but set high enough
never to bind (issue 11), beside the same run with none:

    none                               no row in `queues` or `limits`
    queue concurrency limit            the jobs' queue limited to 1,000 running
    task concurrency limit             the task limited to 1,000 running
    a lock key on every job            each job its own key (no two share one)
    queue rate limit                   1,000,000 starts/s, burst 1,000,000
    another queue paused               a queue no job is in, paused

Two measures per condition:

* drain: one in-process Scheduler(max_concurrent_jobs=10) drains N due no-op jobs (W2's
  method: one INSERT, ANALYZE, then start and poll until none is due or running), jobs/s;
* claim: the server-side time of one claim of 10 from a backlog, in ms: every statement
  the store sends in one claim pass (`Claims.claim()`) is first run under EXPLAIN
  (ANALYZE, TIMING OFF: no per-node clock reads) in a transaction that is rolled back, its
  Planning + Execution Time summed, and then run for real, so the claims go on exactly as
  they would (after a plain claim that reports flow control, the serialised path). 5 claims warm up,
  then `--claims` are measured; the jobs of each claim are marked succeeded before the
  next, so no claim carries successes and none counts running jobs of earlier claims.
  pg_stat_statements would need the server's shared_preload_libraries; EXPLAIN needs
  nothing, and follows whatever SQL the store sends.

    python -m benchmarks.flow [--jobs 10000] [--repeats 3] [--claims 50]
    python -m benchmarks.run --only FLOW ...        (the same, in run.py's report)

Prints one JSON line per result (run.py's Report), then the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg

from benchmarks.run import (
    CONCURRENCY,
    DSN,
    Report,
    drop,
    fresh_scheduler,
    poll_until_drained,
    repeat,
)
from benchmarks.tasks import noop
from scheduler import Scheduler
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.services.claiming import Claims
from scheduler.tasks import task_name_for

#: High enough never to bind: a drain of 10 at a time never comes near.
NOT_BINDING = 1_000
RATE = 1_000_000
CLAIM_SIZE = 10
WARM_UP_CLAIMS = 5


@dataclass(frozen=True)
class Condition:
    name: str
    apply: Callable[[Scheduler], Awaitable[None]]
    lock_keys: bool = False


async def _nothing(scheduler: Scheduler) -> None:
    return None


async def _queue_concurrency(scheduler: Scheduler) -> None:
    await scheduler.set_queue_limits("default", concurrency_limit=NOT_BINDING)


async def _task_concurrency(scheduler: Scheduler) -> None:
    await scheduler.set_task_limits(noop, concurrency_limit=NOT_BINDING)


async def _queue_rate(scheduler: Scheduler) -> None:
    await scheduler.set_queue_limits("default", rate_limit=RATE, rate_period=1, rate_burst=RATE)


async def _other_queue_paused(scheduler: Scheduler) -> None:
    await scheduler.pause_queue("other")


CONDITIONS = (
    Condition("none", _nothing),
    Condition(f"queue concurrency limit {NOT_BINDING:,}", _queue_concurrency),
    Condition(f"task concurrency limit {NOT_BINDING:,}", _task_concurrency),
    Condition("a distinct lock key on every job", _nothing, lock_keys=True),
    Condition(f"queue rate limit {RATE:,}/s, burst {RATE:,}", _queue_rate),
    Condition("another queue paused", _other_queue_paused),
)


async def prepared_schema(pool: asyncpg.Pool[Any], condition: Condition, jobs: int) -> Scheduler:
    """A fresh schema with `jobs` due no-op jobs (in the 'default' queue) and the
    condition's settings, analysed."""
    scheduler = await fresh_scheduler(pool)
    await condition.apply(scheduler)
    q = quote_identifier(scheduler.config.schema)
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, lock_key)"
        " SELECT gen_random_uuid()::text, $1, CASE WHEN $3 THEN 'key-' || n END"
        " FROM generate_series(1, $2) AS n",
        task_name_for(noop),
        jobs,
        condition.lock_keys,
    )
    await pool.execute(f"ANALYZE {q}.jobs")
    return scheduler


async def drain(pool: asyncpg.Pool[Any], condition: Condition, jobs: int) -> float:
    scheduler = await prepared_schema(pool, condition, jobs)
    name = scheduler.config.schema
    try:
        started = time.perf_counter()
        async with scheduler:
            await poll_until_drained(pool, name)
        return jobs / (time.perf_counter() - started)
    finally:
        await drop(pool, name)


#: While set, every `fetch` of a TimedConnection adds the statement's server time here.
_server_times: ContextVar[list[float] | None] = ContextVar("server_times", default=None)


class TimedConnection(asyncpg.Connection):
    """Measures each statement fetched while `_server_times` is set, then runs it."""

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        times = _server_times.get()
        if times is not None:
            transaction = self.transaction()
            await transaction.start()
            try:
                plan = json.loads(
                    await self.fetchval(
                        f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query}", *args
                    )
                )[0]
            finally:
                await transaction.rollback()
            times.append(plan["Planning Time"] + plan["Execution Time"])
        return await super().fetch(query, *args, **options)


async def claim_cost(
    pool: asyncpg.Pool[Any], condition: Condition, jobs: int, claims: int
) -> tuple[float, float]:
    """Mean server time of one claim of 10 (ms), and statements per claim."""
    scheduler = await prepared_schema(pool, condition, jobs)
    name = scheduler.config.schema
    q = quote_identifier(name)
    timed = await asyncpg.create_pool(DSN, min_size=1, max_size=2, connection_class=TimedConnection)
    assert timed is not None
    try:
        task = task_name_for(noop)
        worker = await pool.fetchval(
            f"SELECT {q}.register_worker(ARRAY[$1], lease => '1 hour')", task
        )
        # The dispatcher's claim policy over the store: plain, then flow when it says so.
        claiming = Claims(PostgresJobStore(timed, name))
        per_claim: list[float] = []
        statements = 0
        for number in range(WARM_UP_CLAIMS + claims):
            times: list[float] = []
            token = _server_times.set(times)
            try:
                claimed = await claiming.claim(worker, [task], CLAIM_SIZE, 0.0, ["default"])
            finally:
                _server_times.reset(token)
            if len(claimed) != CLAIM_SIZE:
                raise RuntimeError(f"{condition.name}: a claim took {len(claimed)}, not 10")
            await pool.execute(
                f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL,"
                " finished_at = now() WHERE job_id = ANY($1::text[])",
                [job.lease.job_id for job in claimed],
            )
            if number >= WARM_UP_CLAIMS:
                per_claim.append(sum(times))
                statements += len(times)
        return statistics.fmean(per_claim), statements / claims
    finally:
        await timed.close()
        await drop(pool, name)


async def run_all(
    pool: asyncpg.Pool[Any], report: Report, *, n: int, repeats: int, claims: int = 50
) -> None:
    # Unrecorded: the first drain of a process pays for imports and cold caches, which
    # would otherwise count against whichever condition runs first.
    await drain(pool, CONDITIONS[0], min(n, 1_000))
    for condition in CONDITIONS:
        report.add(
            f"FLOW drain {n} no-op jobs, {condition.name}",
            "scheduler",
            "jobs/s",
            await repeat(repeats, partial(drain, pool, condition, n)),
        )
    for condition in CONDITIONS:
        results = [await claim_cost(pool, condition, n, claims) for _ in range(repeats)]
        report.add(
            f"FLOW claim of {CLAIM_SIZE}, server time, {condition.name}",
            "scheduler",
            "ms",
            [ms for ms, _ in results],
            statements_per_claim=results[0][1],
            note=f"{results[0][1]:g} statement(s) per claim, mean of {claims}",
        )


def summary(report: Report) -> str:
    """Each condition beside `none`: drain rate and claim time, and their ratios."""
    lines = [
        "| limit on (not binding) | drain jobs/s | vs none | claim ms | vs none |",
        "|---|---|---|---|---|",
    ]
    base_drain = report.median("FLOW drain", "scheduler", ", none")
    base_claim = report.median("FLOW claim", "scheduler", ", none")
    for condition in CONDITIONS:
        rate = report.median("FLOW drain", "scheduler", f", {condition.name}")
        cost = report.median("FLOW claim", "scheduler", f", {condition.name}")
        lines.append(
            f"| {condition.name} | {_shown(rate)} | {_ratio(rate, base_drain)}"
            f" | {_shown(cost)} | {_ratio(cost, base_claim)} |"
        )
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "not run" if value is None else f"{value:g}"


def _ratio(value: float | None, base: float | None) -> str:
    return "" if value is None or not base else f"{value / base:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--claims", type=int, default=50, help="measured claims of 10")
    options = parser.parse_args()
    if options.jobs < (WARM_UP_CLAIMS + options.claims) * CLAIM_SIZE:
        parser.error("--jobs must cover the warm-up and measured claims of 10")
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=CONCURRENCY + 6)
    assert pool is not None
    report = Report()
    try:
        await run_all(pool, report, n=options.jobs, repeats=options.repeats, claims=options.claims)
    finally:
        await pool.close()
    print(f"\nmax_concurrent_jobs={CONCURRENCY}, median of {options.repeats} run(s)\n")
    print(report.markdown(), summary(report), sep="\n\n")


if __name__ == "__main__":
    asyncio.run(main())
