"""What W7's plain drain writes to the WAL per job, with 10k and 1M pending: the first 10,000
jobs of a backlog drained right after a CHECKPOINT (as after any checkpoint), WAL bytes and
full-page images per job (pg_stat_wal), alternating sizes.

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


async def one(pool: asyncpg.Pool[Any], size: int) -> dict[str, Any]:
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    try:
        await backlog.fill(pool, schema, backlog.CONDITIONS[0], size)
        await pool.execute("CHECKPOINT")
        lsn = await pool.fetchval("SELECT pg_current_wal_lsn()")
        images = await pool.fetchval("SELECT wal_fpi FROM pg_stat_wal")
        rate, _ = await backlog.drain(pool, schema)
        wal = await pool.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        images = await pool.fetchval("SELECT wal_fpi FROM pg_stat_wal") - images
        return {
            "backlog": size,
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
            for size in (int(s) for s in options.sizes.split(",")):
                print(json.dumps(await one(pool, size)), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
