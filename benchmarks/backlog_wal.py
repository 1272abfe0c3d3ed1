"""What W7's plain drain writes to the WAL per job, with 10k and 1M pending: the first 10,000
jobs of a backlog drained right after a CHECKPOINT (as after any checkpoint), WAL bytes and
full-page images per job (pg_stat_wal), alternating sizes, with time-ordered job ids (as
`schedule()` makes them) and with random ones (as W7's fill made them before).

    python -m benchmarks.backlog_wal [--sizes 10000,1000000] [--repeats 2]

Written to test why the plain drain at 1M ran at ~0.9 of its 10k rate with flat buffers
per claim (docs/scale.md, Backlog). Needs PostgreSQL 14+ (pg_stat_wal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import asyncpg

from benchmarks import backlog
from benchmarks.run import DSN, drop, fresh_scheduler
from scheduler.postgres.sql import quote_identifier


async def one(pool: asyncpg.Pool[Any], size: int, random_ids: bool) -> dict[str, Any]:
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    try:
        await backlog.fill(pool, schema, backlog.CONDITIONS[0], size)
        if random_ids:  # as W7 filled before: gen_random_uuid(), version 4
            await pool.execute(
                f"UPDATE {quote_identifier(schema)}.jobs SET job_id = gen_random_uuid()::text"
            )
            await pool.execute(f"VACUUM ANALYZE {quote_identifier(schema)}.jobs")
        await pool.execute("CHECKPOINT")
        lsn = await pool.fetchval("SELECT pg_current_wal_lsn()")
        images = await pool.fetchval("SELECT wal_fpi FROM pg_stat_wal")
        rate, _ = await backlog.drain(pool, schema)
        wal = await pool.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        images = await pool.fetchval("SELECT wal_fpi FROM pg_stat_wal") - images
        return {
            "backlog": size,
            "ids": "random (v4)" if random_ids else "time-ordered (v7)",
            "drain_jobs_per_s": round(rate),
            "wal_bytes_per_job": round(float(wal) / backlog.DRAINED),
            "full_page_images_per_job": round(images / backlog.DRAINED, 3),
        }
    finally:
        await drop(pool, schema)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=14)
    assert pool is not None
    try:
        for _ in range(options.repeats):
            for random_ids in (False, True):
                for size in (int(s) for s in options.sizes.split(",")):
                    print(json.dumps(await one(pool, size, random_ids)), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
