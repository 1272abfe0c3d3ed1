"""The README's example: a task, a replica, one job and its result."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from scheduler import Scheduler, task


@task(max_retries=3, timeout=30)  # retried with backoff if it raises, cut off after 30 s
async def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    dsn = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    async with asyncpg.create_pool(dsn) as pool, Scheduler(pool) as scheduler:
        job_id = await scheduler.schedule(add, args=(2, 3), delay=1)  # durable once it returns
        job = await scheduler.wait_for_job(job_id, timeout=30)
        print(job.status.value, job.result)  # succeeded 5


if __name__ == "__main__":
    asyncio.run(main())
