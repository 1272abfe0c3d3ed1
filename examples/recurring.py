"""Recurring schedules: a cron job declared in code, an interval added at run time, a
wall-clock schedule in a time zone, pause and resume. Runs for about five seconds.

Every replica of an application can run this same code: each slot becomes exactly one
job, whichever replica fires it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone

import asyncpg

from scheduler import CoalescePolicy, CronTrigger, IntervalTrigger, Scheduler, current_job


async def heartbeat() -> None:
    print(f"  heartbeat  slot {current_job().job_id.rsplit('@', 1)[1]}")


async def sync_inventory(warehouse: str) -> None:
    print(f"  sync_inventory({warehouse!r})")


async def nightly_report() -> None:
    print("  nightly report")


async def main() -> None:
    dsn = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    pool = await asyncpg.create_pool(dsn)
    scheduler = Scheduler(pool)

    # Declared in code: written when the scheduler starts, once however many replicas
    # declare it. Six fields: seconds first.
    scheduler.cron("* * * * * *", schedule_id="heartbeat")(heartbeat)

    async with scheduler:
        await scheduler.add_schedule(
            sync_inventory,
            IntervalTrigger(seconds=2),
            schedule_id="sync-berlin",
            args=("berlin",),
            coalesce=CoalescePolicy.LATEST,  # after downtime, run once, not once per slot
            misfire_grace_time=60,  # and not at all if more than a minute late
            max_running=1,  # skip a slot while the previous run is unfinished
        )
        await scheduler.add_schedule(
            nightly_report,
            CronTrigger("30 1 * * *", timezone="America/New_York"),
            schedule_id="nightly-report",
        )
        await asyncio.sleep(3)

        await scheduler.pause_schedule("sync-berlin")
        print("  (sync-berlin paused)")
        await asyncio.sleep(2)

        print("\nSchedules:")
        for schedule in await scheduler.list_schedules():
            when = schedule.next_fire_time or datetime.max.replace(tzinfo=timezone.utc)
            state = "paused" if schedule.paused else f"next {when:%Y-%m-%d %H:%M:%S %Z}"
            print(f"  {schedule.schedule_id:<15} {schedule.trigger!r:<58} {state}")
        for schedule_id in ("heartbeat", "sync-berlin", "nightly-report"):
            await scheduler.remove_schedule(schedule_id)  # keep the demo schema tidy
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
