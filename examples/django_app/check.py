"""Run the Django example once and verify it: `python examples/django_app/check.py`.

Migrates, posts two orders through Django's test client (one committed, one rolled back
after enqueueing), runs `manage.py run_scheduler_worker` until the receipt is sent, then
stops it with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")


async def migrate_scheduler(dsn: str, schema: str) -> None:
    import asyncpg

    from scheduler import Scheduler

    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await Scheduler(pool, schema=schema).migrate()


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from shop.models import Order

    asyncio.run(migrate_scheduler(settings.SCHEDULER_DSN, settings.SCHEDULER_SCHEMA))
    call_command("migrate", verbosity=0)
    client = Client()
    created = client.post("/orders", {"item": "book"}, content_type="application/json")
    assert created.status_code == 201, created.content
    failed = client.post(
        "/orders", {"item": "x", "fail_after_enqueue": True}, content_type="application/json"
    )
    assert failed.status_code == 409, failed.content
    lost = failed.json()["order_id"]
    assert not Order.objects.filter(pk=lost).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobs WHERE job_id = %s", [f"receipt-{lost}"])
        assert cursor.fetchone() == (0,)

    worker = subprocess.Popen(
        [sys.executable, str(HERE / "manage.py"), "run_scheduler_worker"], cwd=HERE
    )
    try:
        deadline = time.monotonic() + 30
        order = Order.objects.get(pk=created.json()["order_id"])
        while not order.receipt_sent:
            assert time.monotonic() < deadline, "the receipt job did not run within 30s"
            assert worker.poll() is None, f"the worker exited with {worker.returncode}"
            time.sleep(0.05)
            order.refresh_from_db()
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, f"the worker exited with {code} on SIGTERM"
    print("django example OK")


if __name__ == "__main__":
    main()
