"""Pruning beside claims (issue 21, item 5): does a prune of many finished jobs with
attempt history make a claim wait?

One schema holds `--finished` succeeded jobs that finished 8 days ago, each with one
attempt-history row, and `--pending` due no-op jobs. Then, at once:

* the pruner's own pass (Pruner.run_once: the store's prune statement, batches of
  `--batch` until a batch comes back short), each batch timed;
* a claim loop: claims of 10 through the store (a registered worker), each marked
  succeeded, each timed, until the prune is over;
* a lock watcher: every 5 ms, the ungranted locks any backend of the claim loop waits for
  (pg_locks joined to pg_stat_activity), kept with what held them.

Also before the run: EXPLAIN (ANALYZE, BUFFERS) of one prune batch (rolled back), to show
that a batch is an index range scan of `--batch` rows, not a scan of the table.

    python -m benchmarks.pruning [--finished 1000000] [--pending 50000] [--batch 1000]

Prints JSON lines: the batch's plan summary, then the run's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import asyncpg

from benchmarks.backlog import percentile
from benchmarks.run import DSN, drop, fresh_scheduler
from benchmarks.tasks import noop
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.services.claiming import Claims
from scheduler.services.pruner import Pruner
from scheduler.tasks import task_name_for

RETENTION = 7 * 86400.0
NOOP = task_name_for(noop)
CLAIMS = "pruning-benchmark-claims"


async def fill(pool: asyncpg.Pool[Any], schema: str, finished: int, pending: int) -> None:
    q = quote_identifier(schema)
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, status, attempts, execution_time,"
        " started_at, claimed_at, finished_at, updated_at)"
        " SELECT 'done-' || n, $1, 'succeeded', 1, t, t, t, t, t"
        " FROM generate_series(1, $2) AS n,"
        "      LATERAL (SELECT now() - interval '8 days' - n * interval '1 millisecond' AS t) x",
        NOOP,
        finished,
    )
    await pool.execute(
        f"INSERT INTO {q}.job_attempts (job_id, attempt, worker_id, hostname, claimed_at,"
        " started_at, finished_at, outcome)"
        " SELECT j.job_id, 1, NULL, 'gone', j.claimed_at, j.started_at, j.finished_at,"
        "        'succeeded'"
        f" FROM {q}.jobs j WHERE j.status = 'succeeded'"
    )
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name)"
        " SELECT gen_random_uuid()::text, $1 FROM generate_series(1, $2)",
        NOOP,
        pending,
    )
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")
    await pool.execute(f"VACUUM ANALYZE {q}.job_attempts")


async def batch_plan(pool: asyncpg.Pool[Any], store: PostgresJobStore, batch: int) -> Any:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            plan = json.loads(
                await conn.fetchval(
                    f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {store.q.prune_finished_jobs}",
                    RETENTION,
                    batch,
                )
            )[0]
        finally:
            await transaction.rollback()
    scans: list[dict[str, Any]] = []
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        if "Relation Name" in node or "Index Name" in node:
            scans.append(
                {
                    "node": node["Node Type"],
                    "relation": node.get("Relation Name"),
                    "index": node.get("Index Name"),
                    "rows": node.get("Actual Rows"),
                    "loops": node.get("Actual Loops"),
                }
            )
        stack.extend(node.get("Plans", []))
    triggers = [
        {"trigger": t["Trigger Name"], "calls": t["Calls"], "ms": round(t["Time"], 1)}
        for t in plan.get("Triggers", [])
    ]
    return {
        "ms": round(plan["Execution Time"], 1),
        "buffers": plan["Plan"].get("Shared Hit Blocks", 0)
        + plan["Plan"].get("Shared Read Blocks", 0),
        "scans": scans,
        "triggers": triggers,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    options = parser.parse_args()
    pool = await asyncpg.create_pool(DSN, min_size=3, max_size=6)
    assert pool is not None
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    q = quote_identifier(schema)
    try:
        started = time.perf_counter()
        await fill(pool, schema, options.finished, options.pending)
        store = PostgresJobStore(pool, schema)
        print(
            json.dumps(
                {
                    "workload": "prune batch plan",
                    "finished": options.finished,
                    "fill_seconds": round(time.perf_counter() - started, 1),
                    "plan": await batch_plan(pool, store, options.batch),
                }
            ),
            flush=True,
        )
        worker = uuid.uuid4()
        await store.register_worker(worker, "pruning", 1, [NOOP], 3600, ["default"])
        claim_ms: list[float] = []
        batch_ms: list[float] = []
        waits: list[dict[str, Any]] = []
        pruning = True

        claim_pool = await asyncpg.create_pool(
            DSN, min_size=2, max_size=2, server_settings={"application_name": CLAIMS}
        )
        assert claim_pool is not None
        claimer = Claims(PostgresJobStore(claim_pool, schema))

        async def claims() -> None:
            while pruning:
                t0 = time.perf_counter()
                claimed = await claimer.claim(worker, [NOOP], 10, 0.0, ["default"])
                claim_ms.append((time.perf_counter() - t0) * 1000)
                await claim_pool.execute(
                    f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL,"
                    " finished_at = now() WHERE job_id = ANY($1::text[])",
                    [job.lease.job_id for job in claimed],
                )

        async def watch() -> None:
            async with pool.acquire() as conn:
                while pruning:
                    rows = await conn.fetch(
                        "SELECT l.pid, l.locktype, l.mode, l.relation::regclass::text AS rel,"
                        "       pg_blocking_pids(l.pid) AS blockers"
                        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE NOT l.granted AND a.application_name = $1",
                        CLAIMS,
                    )
                    waits.extend(dict(r) for r in rows)
                    await asyncio.sleep(0.005)

        class TimedPruneStore:
            async def prune_finished_jobs(self, older_than: float, limit: int) -> int:
                t0 = time.perf_counter()
                count = await store.prune_finished_jobs(older_than, limit)
                batch_ms.append((time.perf_counter() - t0) * 1000)
                return count

        pruner = Pruner(
            TimedPruneStore(),  # type: ignore[arg-type]  # the one method a pass calls
            retention=RETENTION,
            interval=3600,
            batch_size=options.batch,
        )
        claim_task = asyncio.create_task(claims())
        watch_task = asyncio.create_task(watch())
        await asyncio.sleep(1.0)  # claims before the prune: the baseline
        baseline = list(claim_ms)
        t0 = time.perf_counter()
        deleted = await pruner.run_once()
        prune_seconds = time.perf_counter() - t0
        pruning = False
        await asyncio.gather(claim_task, watch_task)
        await claim_pool.close()
        during = claim_ms[len(baseline) :]
        left = await pool.fetchval(f"SELECT count(*) FROM {q}.job_attempts")
        print(
            json.dumps(
                {
                    "workload": "prune beside claims",
                    "finished": options.finished,
                    "batch": options.batch,
                    "deleted": deleted,
                    "attempt_rows_left": left,
                    "prune_seconds": round(prune_seconds, 1),
                    "batches": len(batch_ms),
                    "batch_ms_median": round(statistics.median(batch_ms), 1),
                    "batch_ms_p99": round(percentile(batch_ms, 0.99), 1),
                    "batch_ms_max": round(max(batch_ms), 1),
                    "claims_before": len(baseline),
                    "claim_ms_p99_before": round(percentile(baseline, 0.99), 2),
                    "claims_during": len(during),
                    "claim_ms_median_during": round(statistics.median(during), 2),
                    "claim_ms_p99_during": round(percentile(during, 0.99), 2),
                    "claim_ms_max_during": round(max(during), 2),
                    "claim_lock_waits_seen": len(waits),
                    "lock_waits": waits[:10],
                }
            ),
            flush=True,
        )
    finally:
        await drop(pool, schema)
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
