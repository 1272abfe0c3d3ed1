"""Screenshots of every dashboard page for the README:

    python -m tests.browser.screenshots [--out docs/images]

Fills a throwaway schema with a small shop's jobs (a running replica does the work), serves
the dashboard, and saves overview, jobs, job detail, schedules and workers as PNGs."""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from scheduler import JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.browser.harness import add_demo_schedules, chromium, register_demo_tasks, serve_dashboard
from tests.support.db import FAST, TEST_DSN, unique_schema, wait_until


async def fill(scheduler: Scheduler) -> str:
    """Jobs of every kind; returns the id of a failed charge to show in detail."""
    for user in range(1, 41):
        await scheduler.schedule("emails.send_welcome", args=(user,))
    failed = [
        await scheduler.schedule("billing.charge_card", args=(f"INV-{n}", 1200 + n))
        for n in (1040, 1041, 1042)
    ]
    for name in ("hero.jpg", "avatar-512.png"):
        await scheduler.schedule("media.resize_image", args=(name, 1024))
    for n in range(12):
        await scheduler.schedule("inventory.sync", args=(f"depot-{n}",), delay=600 + 60 * n)
    for job_id in failed:
        await wait_until(partial(_is, scheduler, job_id, JobStatus.FAILED), message="a failure")
    await wait_until(lambda: _running(scheduler, 2), message="the resizes to start")
    await scheduler.pause_queue("mail")
    for user in range(41, 48):
        await scheduler.schedule("emails.send_welcome", args=(user,))
    return failed[-1]


async def _is(scheduler: Scheduler, job_id: str, status: JobStatus) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status is status


async def _running(scheduler: Scheduler, count: int) -> bool:
    return len(scheduler.running_job_ids) >= count


def allow(request: object, action: object) -> bool:
    return True


async def main(out: Path) -> None:
    pool = await asyncpg.create_pool(TEST_DSN, min_size=1, max_size=10)
    assert pool is not None
    schema = unique_schema("shop")
    fast: dict[str, Any] = dict(FAST)
    try:
        scheduler = Scheduler(
            pool, schema=schema, queues=["default", "mail", "billing", "media"], **fast
        )
        register_demo_tasks(scheduler)
        await scheduler.migrate()
        await add_demo_schedules(scheduler)
        await scheduler.start()
        # A second replica, on other queues, for the workers page.
        peer = Scheduler(pool, schema=schema, queues=["default", "billing"], **fast)
        register_demo_tasks(peer)
        await peer.start()
        try:
            failed_id = await fill(scheduler)
            async with serve_dashboard(pool, schema, allow) as url, chromium() as browser:
                page = await browser.new_page(viewport={"width": 1280, "height": 600})
                shots = {
                    "dashboard-overview.png": "/",
                    "dashboard-jobs.png": "/jobs?status=failed",
                    "dashboard-job.png": f"/jobs/{failed_id}",
                    "dashboard-schedules.png": "/schedules",
                    "dashboard-workers.png": "/workers",
                }
                for name, path in shots.items():
                    await page.goto(url + path)
                    await page.wait_for_load_state("networkidle")
                    await page.screenshot(path=str(out / name), full_page=True)
                    print(out / name)
        finally:
            await peer.shutdown(grace=0)
            await scheduler.shutdown(grace=0)
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(out))
