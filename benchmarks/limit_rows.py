"""What a flow claim costs beside many limits: N tasks, each with a concurrency limit and a
rate limit (2N rows of `limits`), a worker running all of them, no job due. The claim
still asks every limit how many may start; this measures the server round trip of
`claim_flow_jobs()` (median of 30, after 10 warm-up calls) per N.

    python -m benchmarks.limit_rows [N ...]        (default: 1 10 100 300)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from benchmarks.run import DSN
from scheduler.postgres import migrate
from scheduler.postgres.sql import quote_identifier


async def claim_ms(tasks_with_limits: int) -> float:
    conn = await asyncpg.connect(DSN)
    schema = f"bench_limit_rows_{uuid.uuid4().hex[:8]}"
    q = quote_identifier(schema)
    try:
        await migrate.migrate(conn, schema)
        tasks = [f"bench:t{i}" for i in range(tasks_with_limits)]
        for task in tasks:
            await conn.execute(
                f"SELECT {q}.set_task_limits($1, concurrency_limit => 100, rate_limit => 1000)",
                task,
            )
        worker = await conn.fetchval(f"SELECT {q}.register_worker($1::text[])", tasks)
        times = []
        for _ in range(40):
            start = time.perf_counter()
            await conn.fetch(
                f"SELECT * FROM {q}.claim_flow_jobs($1, $2::text[], ARRAY['default'], 10)",
                worker,
                tasks,
            )
            times.append(time.perf_counter() - start)
        return statistics.median(times[10:]) * 1000
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", nargs="*", type=int, default=[1, 10, 100, 300])
    options = parser.parse_args()
    for n in options.tasks:
        ms = asyncio.run(claim_ms(n))
        print(f"{n} tasks, {2 * n} limit rows: claim {ms:.2f} ms (median of 30)")


if __name__ == "__main__":
    main()
