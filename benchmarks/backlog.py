"""W7, backlog (issue 21, item 4): what a claim costs, and how fast the first 10,000 jobs
drain, with 10k, 100k and 1M jobs pending, plain and under each kind of flow control.

Conditions (the backlog is `--sizes` jobs, all due; "beside" means the drained jobs are
10,000 others, due after the backlog, so a claim reading in due order meets the backlog
first):

    none                                  the backlog is no-op jobs, no limit anywhere
    queue concurrency limit 1,000         the backlog's queue limited (never binds at 10)
    task concurrency limit 1,000          the backlog's task limited (never binds)
    a distinct lock key on every job      each backlog job its own key
    queue rate limit 1,000,000/s          the backlog's queue rate-limited (never binds)
    beside a paused queue's backlog       the backlog in a queue the replica works, paused
    beside an empty rate bucket's backlog the backlog of a task whose bucket is empty
                                          (1 start a day, spent): it can never start
    beside a held lock key's backlog      the backlog shares one lock key, held by a
                                          running job of another (live) worker

Two measures per condition and size, in one schema filled with one INSERT ... SELECT
generate_series, then vacuumed and analysed:

* claim: `--claims` claims of 10 through the store's own claim path (after 5 warm-up
  claims), each statement it sends first run under EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)
  in a rolled-back transaction (as benchmarks/flow.py does): server ms per claim (mean and
  p99) and shared buffers touched per claim (hit + read), the structural measure that a
  loaded machine does not blur. The jobs of each claim are marked succeeded before the next.
* drain: one in-process Scheduler(max_concurrent_jobs=10) until 10,000 jobs succeeded:
  jobs/s, and the p99 of the wall time of its claims (client side).

The ratio of each size's figure to the same condition's 10k figure is the result (>= 0.9
for the drain rate is the issue's target; buffers per claim should not grow).

    python -m benchmarks.backlog [--sizes 10000,100000,1000000] [--claims 50]
        [--only NAME_SUBSTRING] [--no-drain] [--repeats N]

Prints one JSON line per result, then a table of the medians over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from benchmarks.run import DSN, drop, fresh_scheduler
from benchmarks.tasks import noop, record_latency
from scheduler import Scheduler
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.services.claiming import Claims
from scheduler.tasks import task_name_for

DRAINED = 10_000
CLAIM_SIZE = 10
WARM_UP_CLAIMS = 5
NOOP = task_name_for(noop)
#: A job id as `schedule()` and the SQL API make them: time-ordered (UUID version 7, the
#: first 48 bits the time in ms). Random UUIDs put each job's index entries on a page of
#: its own, which at 1M pending tripled the WAL per job (benchmarks/backlog_wal.py).
TIME_ORDERED_ID = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING"
    " substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)"
    " FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid::text"
)
#: The task of the backlogs that can never start (an empty rate bucket).
STUCK = task_name_for(record_latency)


@dataclass(frozen=True)
class Condition:
    name: str
    #: The backlog's task, queue and whether each job has its own lock key ('distinct'),
    #: one shared key ('shared') or none.
    task: str = NOOP
    queue: str = "default"
    keys: str = "none"
    #: Whether the 10,000 drained jobs are others, behind the backlog.
    beside: bool = False
    setting: Callable[[asyncpg.Pool[Any], str], Awaitable[None]] | None = None


async def _queue_limit(pool: asyncpg.Pool[Any], q: str) -> None:
    await pool.execute(f"SELECT {q}.set_queue_limits('default', concurrency_limit => 1000)")


async def _task_limit(pool: asyncpg.Pool[Any], q: str) -> None:
    await pool.execute(f"SELECT {q}.set_task_limits($1, concurrency_limit => 1000)", NOOP)


async def _queue_rate(pool: asyncpg.Pool[Any], q: str) -> None:
    await pool.execute(
        f"SELECT {q}.set_queue_limits('default', rate_limit => 1000000, rate_burst => 1000000)"
    )


async def _paused(pool: asyncpg.Pool[Any], q: str) -> None:
    await pool.execute(f"SELECT {q}.pause_queue('held')")


async def _empty_bucket(pool: asyncpg.Pool[Any], q: str) -> None:
    await pool.execute(
        f"SELECT {q}.set_task_limits($1, rate_limit => 1, rate_period => 86400)", STUCK
    )
    await pool.execute(
        f"UPDATE {q}.limits SET state = jsonb_build_object('tokens', 0, 'refilled_at',"
        " extract(epoch FROM now())) WHERE (scope, name, kind) = ('task', $1, 'rate')",
        STUCK,
    )


async def _held_key(pool: asyncpg.Pool[Any], q: str) -> None:
    # One job of the key runs, held by another worker whose lease outlives the benchmark
    # (so no reaper hands it back and the key stays held through the drain).
    holder = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY['benchmark-holder'], interval '1 day')"
    )
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'running', lease_owner = $1, attempts = 1"
        f" WHERE job_id = (SELECT job_id FROM {q}.jobs WHERE lock_key = 'hot' LIMIT 1)",
        holder,
    )


CONDITIONS = (
    Condition("none"),
    Condition("queue concurrency limit 1,000", setting=_queue_limit),
    Condition("task concurrency limit 1,000", setting=_task_limit),
    Condition("a distinct lock key on every job", keys="distinct"),
    Condition("queue rate limit 1,000,000/s", setting=_queue_rate),
    Condition("beside a paused queue's backlog", queue="held", beside=True, setting=_paused),
    Condition(
        "beside an empty rate bucket's backlog", task=STUCK, beside=True, setting=_empty_bucket
    ),
    Condition(
        "beside a held lock key's backlog",
        keys="shared",
        beside=True,
        setting=_held_key,
    ),
)


async def fill(
    pool: asyncpg.Pool[Any], schema: str, condition: Condition, size: int, spare: int = 0
) -> None:
    """`size` backlog jobs, due a day ago in order of n, then (beside) 10,000 no-op jobs due
    just now, in 'default'; the condition's settings; ANALYZE. `spare` more jobs of the
    drained kind make up for those the claim-cost phase takes first."""
    q = quote_identifier(schema)
    key = {"none": "NULL", "distinct": "'key-' || n", "shared": "'hot'"}[condition.keys]
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, queue, lock_key, execution_time)"
        f" SELECT {TIME_ORDERED_ID}, $1, $2, {key},"
        "        now() - interval '1 day' + n * interval '1 microsecond'"
        " FROM generate_series(1, $3) AS n",
        condition.task,
        condition.queue,
        size + (0 if condition.beside else spare),
    )
    if condition.beside:
        await pool.execute(
            f"INSERT INTO {q}.jobs (job_id, task_name, execution_time)"
            f" SELECT {TIME_ORDERED_ID}, $1, now() - interval '1 minute'"
            "        + n * interval '1 microsecond'"
            " FROM generate_series(1, $2) AS n",
            NOOP,
            DRAINED + spare,
        )
    if condition.setting is not None:
        await condition.setting(pool, q)
    # VACUUM too: an autovacuum of the rows just inserted would otherwise run during the
    # drain (and more of it the larger the backlog), which a backlog that built up over
    # time does not cost.
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")


#: While set, every `fetch` of an ExplainedConnection adds (server ms, buffers) here.
_measured: ContextVar[list[tuple[float, int]] | None] = ContextVar("measured", default=None)


def _buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


class ExplainedConnection(asyncpg.Connection):
    """Runs each statement fetched while `_measured` is set under EXPLAIN (ANALYZE,
    BUFFERS), rolled back, then for real."""

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        measured = _measured.get()
        if measured is not None:
            transaction = self.transaction()
            await transaction.start()
            try:
                plan = json.loads(
                    await self.fetchval(
                        f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) {query}", *args
                    )
                )[0]
            finally:
                await transaction.rollback()
            measured.append(
                (plan["Planning Time"] + plan["Execution Time"], _buffers(plan["Plan"]))
            )
        return await super().fetch(query, *args, **options)


@dataclass
class ClaimCost:
    ms: list[float] = field(default_factory=list)
    buffers: list[int] = field(default_factory=list)


async def claim_cost(pool: asyncpg.Pool[Any], schema: str, claims: int) -> ClaimCost:
    q = quote_identifier(schema)
    explained = await asyncpg.create_pool(
        DSN, min_size=1, max_size=2, connection_class=ExplainedConnection
    )
    assert explained is not None
    cost = ClaimCost()
    try:
        store = PostgresJobStore(explained, schema)
        claiming = Claims(store)  # the dispatcher's claim policy over the store
        worker = uuid.uuid4()
        await store.register_worker(worker, "backlog", 1, [NOOP, STUCK], 3600, ["default", "held"])
        for number in range(WARM_UP_CLAIMS + claims):
            measured: list[tuple[float, int]] = []
            token = _measured.set(measured)
            try:
                claimed = await claiming.claim(
                    worker, [NOOP, STUCK], CLAIM_SIZE, 0.0, ["default", "held"]
                )
            finally:
                _measured.reset(token)
            if len(claimed) != CLAIM_SIZE:
                raise RuntimeError(f"a claim took {len(claimed)} jobs, not {CLAIM_SIZE}")
            await pool.execute(
                f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL,"
                " finished_at = now() WHERE job_id = ANY($1::text[])",
                [job.lease.job_id for job in claimed],
            )
            if number >= WARM_UP_CLAIMS:
                cost.ms.append(sum(ms for ms, _ in measured))
                cost.buffers.append(sum(b for _, b in measured))
        await pool.execute(f"DELETE FROM {q}.workers WHERE worker_id = $1", worker)
        return cost
    finally:
        await explained.close()


async def drain(pool: asyncpg.Pool[Any], schema: str) -> tuple[float, list[float]]:
    """Jobs/s of the first DRAINED successes, and each claim's wall time (ms)."""
    q = quote_identifier(schema)
    scheduler: Scheduler = await fresh_scheduler(pool, schema, queues=["default", "held"])
    claim_ms: list[float] = []
    # Each claim pass timed from outside (the policy, whichever statements it runs); its
    # behaviour is unchanged. Patched on the class: the runtime builds its own instance.
    claim = Claims.claim

    async def timed_claim(self: Claims, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await claim(self, *args, **kwargs)
        finally:
            claim_ms.append((time.perf_counter() - started) * 1000)

    Claims.claim = timed_claim  # type: ignore[method-assign]
    try:
        before = await pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'")
        started = time.perf_counter()
        async with scheduler:
            deadline = started + 600
            while True:
                done = await pool.fetchval(
                    f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'"
                )
                if done - before >= DRAINED:
                    elapsed = time.perf_counter() - started
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{done - before} of {DRAINED} jobs drained in 600 s")
                await asyncio.sleep(0.05)
    finally:
        Claims.claim = claim  # type: ignore[method-assign]
    return DRAINED / elapsed, claim_ms


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def run(
    pool: asyncpg.Pool[Any], condition: Condition, size: int, claims: int, drains: bool
) -> dict[str, Any]:
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    try:
        started = time.perf_counter()
        await fill(pool, schema, condition, size, (WARM_UP_CLAIMS + claims) * CLAIM_SIZE)
        filled = time.perf_counter() - started
        cost = await claim_cost(pool, schema, claims)
        record: dict[str, Any] = {
            "workload": "W7 backlog",
            "condition": condition.name,
            "backlog": size,
            "fill_seconds": round(filled, 1),
            "claim_ms_mean": round(statistics.fmean(cost.ms), 3),
            "claim_ms_p99": round(percentile(cost.ms, 0.99), 3),
            "claim_buffers_mean": round(statistics.fmean(cost.buffers), 1),
            "claim_buffers_max": max(cost.buffers),
            "claims": claims,
        }
        if drains:
            rate, claim_ms = await drain(pool, schema)
            record |= {
                "drain_jobs_per_s": round(rate, 1),
                "drain_claim_ms_p99": round(percentile(claim_ms, 0.99), 2),
                "drain_claims": len(claim_ms),
            }
        return record
    finally:
        await drop(pool, schema)


def medians(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (condition, backlog): the median of each figure over the repeats."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["condition"], r["backlog"]), []).append(r)
    merged = []
    for (condition, backlog), group in groups.items():
        record: dict[str, Any] = {"condition": condition, "backlog": backlog, "runs": len(group)}
        for name in (
            "claim_buffers_mean",
            "claim_ms_p99",
            "drain_jobs_per_s",
            "drain_claim_ms_p99",
        ):
            values = [r[name] for r in group if r.get(name) is not None]
            if values:
                record[name] = round(statistics.median(values), 2)
        merged.append(record)
    return merged


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| condition | backlog | buffers/claim | vs 10k | claim ms p99 | drain jobs/s"
        " | vs 10k | drain claim p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base: dict[str, dict[str, Any]] = {}
    for r in medians(records):
        first = base.setdefault(r["condition"], r)
        rate, base_rate = r.get("drain_jobs_per_s"), first.get("drain_jobs_per_s")
        lines.append(
            f"| {r['condition']} | {r['backlog']:,} | {r['claim_buffers_mean']:g}"
            f" | {r['claim_buffers_mean'] / first['claim_buffers_mean']:.2f}"
            f" | {r['claim_ms_p99']:g}"
            f" | {rate if rate is not None else 'not run'}"
            f" | {f'{rate / base_rate:.2f}' if rate and base_rate else ''}"
            f" | {r.get('drain_claim_ms_p99', '')} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--only", default="", help="run the conditions whose name has this")
    parser.add_argument("--no-drain", action="store_true", help="claim cost only")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run each condition and size this many times, sizes interleaved; the table"
        " shows the medians (a drain of 10,000 jobs lasts about a second)",
    )
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=14)
    assert pool is not None
    records: list[dict[str, Any]] = []
    try:
        for condition in CONDITIONS:
            if options.only not in condition.name:
                continue
            for repeat in range(options.repeats):
                for size in sizes:
                    record = await run(pool, condition, size, options.claims, not options.no_drain)
                    record["repeat"] = repeat
                    emit(record)
                    records.append(record)
    finally:
        await pool.close()
    print()
    print(table(records))


if __name__ == "__main__":
    asyncio.run(main())
