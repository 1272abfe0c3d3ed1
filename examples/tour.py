"""A few seconds of the engine at work: a job due now, a delayed one, retries with
backoff, a timeout, and a running job cancelled. Run with `nox -s demo`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import asyncpg

from scheduler import Job, RetryBackoff, Scheduler, current_job


async def greet(name: str) -> None:
    print(f"  greet: hello {name}")


async def flaky(succeed_on_attempt: int) -> None:
    attempt = current_job().attempt
    if attempt < succeed_on_attempt:
        print(f"  flaky: attempt {attempt} fails")
        raise RuntimeError(f"attempt {attempt} failed")
    print(f"  flaky: attempt {attempt} succeeds")


async def slow(label: str) -> None:
    print(f"  slow ({label}): started")
    await asyncio.sleep(60)


async def wait_for(scheduler: Scheduler, job_id: str, condition: Callable[[Job], bool]) -> Job:
    while True:  # a demo waits politely; tests use deadlines
        job = await scheduler.get_job(job_id)
        if job is not None and condition(job):
            return job
        await asyncio.sleep(0.05)


async def main() -> None:
    dsn = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    pool = await asyncpg.create_pool(dsn)
    backoff = RetryBackoff(base=0.2, jitter=False)
    async with Scheduler(pool, max_concurrent_jobs=4, retry_backoff=backoff) as scheduler:
        ids = {
            "greet now": await scheduler.schedule(greet, args=("now",)),
            "greet in 1 s": await scheduler.schedule(greet, delay=1, args=("a second later",)),
            "flaky": await scheduler.schedule(flaky, args=(3,), max_retries=3),
            "timeout": await scheduler.schedule(slow, args=("0.5 s timeout",), timeout=0.5),
            "cancelled": await scheduler.schedule(slow, args=("to be cancelled",)),
        }
        await wait_for(scheduler, ids["cancelled"], lambda job: job.started_at is not None)
        print(f"  cancel_job -> {await scheduler.cancel_job(ids['cancelled'])}")
        print("\nOutcomes:")
        for label, job_id in ids.items():
            job = await wait_for(scheduler, job_id, lambda job: job.is_finished)
            error = (job.last_error or "").splitlines()[-1:] or [""]
            print(f"  {label:<13} {job.status.value:<10} attempts={job.attempts} {error[0]}")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
