"""A producer-only process: schedules one job and waits for it, never starting a scheduler.

    python -m tests.support.producer DSN SCHEMA ANSWER

Prints the finished job as JSON (status, result) on one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg

from scheduler import Scheduler
from tests.support import side_jobs


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("answer")
    options = parser.parse_args()
    pool = await asyncpg.create_pool(options.dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        producer = Scheduler(pool, schema=options.schema)
        job_id = await producer.schedule(side_jobs.work_then_answer, args=(0.3, options.answer))
        job = await producer.wait_for_job(job_id, timeout=60)
        print(json.dumps({"job_id": job_id, "status": job.status.value, "result": job.result}))
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
