"""A dashboard served over real HTTP (uvicorn, in the test's event loop) and Debian's
chromium driven by Playwright. Shared by the browser tests and the screenshot script."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import uvicorn
from playwright.async_api import Browser, async_playwright

from scheduler import CronTrigger, IntervalTrigger, Scheduler
from scheduler.dashboard import create_app
from scheduler.dashboard.security import Authorize
from tests.browser import demo_tasks

#: Debian's chromium; Playwright never downloads a browser of its own here.
CHROMIUM = os.environ.get("SCHEDULER_TEST_CHROMIUM", "/usr/bin/chromium")


def register_demo_tasks(scheduler: Scheduler) -> None:
    scheduler.register(demo_tasks.send_welcome_email, name="emails.send_welcome", queue="mail")
    scheduler.register(demo_tasks.charge_card, name="billing.charge_card", queue="billing")
    scheduler.register(demo_tasks.resize_image, name="media.resize_image", queue="media")
    scheduler.register(demo_tasks.nightly_report, name="reports.nightly")
    scheduler.register(demo_tasks.sync_inventory, name="inventory.sync")


async def add_demo_schedules(scheduler: Scheduler) -> None:
    await scheduler.add_schedule(
        "reports.nightly", CronTrigger("0 2 * * *", "Europe/Paris"), schedule_id="nightly-report"
    )
    await scheduler.add_schedule(
        "inventory.sync",
        IntervalTrigger(minutes=15),
        schedule_id="inventory-sync",
        args=("lyon",),
    )


@contextlib.asynccontextmanager
async def serve_dashboard(
    pool: asyncpg.Pool[Any], schema: str, authorize: Authorize | None, **options: Any
) -> AsyncIterator[str]:
    """The dashboard on a free loopback port; yields its base URL."""
    app = create_app(pool, schema=schema, authorize=authorize, **options)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(
            f"no browser at {CHROMIUM}: apt-get install -y chromium (nox -s tests does it)"
        )
    async with async_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()
