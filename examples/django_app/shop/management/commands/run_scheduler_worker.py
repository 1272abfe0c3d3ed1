"""`python manage.py run_scheduler_worker`: run this project's jobs until SIGTERM/Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import asyncpg
from django.conf import settings
from django.core.management.base import BaseCommand

from scheduler import Scheduler
from shop.tasks import send_receipt


class Command(BaseCommand):
    help = "Run a scheduler worker for this project's tasks until SIGTERM or Ctrl-C."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self.work())

    async def work(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with (
            asyncpg.create_pool(settings.SCHEDULER_DSN, min_size=1, max_size=5) as pool,
            Scheduler(pool, schema=settings.SCHEDULER_SCHEMA, tasks=[send_receipt]),
        ):
            self.stdout.write("worker running", ending="\n")
            self.stdout.flush()
            await stop.wait()  # then leaving the block drains the running jobs
