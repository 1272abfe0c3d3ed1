"""One scheduler replica as its own OS process, for crash tests.

    python -m tests.support.replica DSN SCHEMA [--concurrency N] [--default-intervals]
        [--schedule JSON ...] [--poll-only] [--pool-max N] [--application-name NAME]

`--poll-only` runs `Scheduler(listen=False)`; its side-table jobs then write through a
pool of their own (one connection), not the scheduler's.

Prints "READY <worker id>" once started; SIGTERM shuts it down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from typing import Any

import asyncpg

from scheduler import CoalescePolicy, Scheduler
from scheduler.services.claiming import Claims
from scheduler.store import ClaimedJob
from scheduler.triggers import trigger_from_json
from tests.support import process_jobs, side_jobs


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lease-time", type=float, default=2.0)
    parser.add_argument("--heartbeat-interval", type=float, default=0.4)
    parser.add_argument(
        "--default-intervals",
        action="store_true",
        help="run on the library's default lease, heartbeat, poll, reap and grace settings"
        " instead of the fast test ones (--lease-time and --heartbeat-interval are ignored)",
    )
    parser.add_argument(
        "--process-pool",
        type=int,
        default=None,
        help="process_pool_size; the process tasks of tests.support.process_jobs are"
        " registered (by their @task) in every replica",
    )
    parser.add_argument(
        "--freeze-after-claim",
        action="store_true",
        help="fault injection: block the process right after the first claim commits",
    )
    parser.add_argument(
        "--schedule",
        action="append",
        default=[],
        help="declare a schedule of side_jobs.work: JSON with id, trigger (as to_json()),"
        " seconds, and any of coalesce, max_running, misfire_grace_time",
    )
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=None,
        help="a queue to work (repeatable; default: the Scheduler's)",
    )
    parser.add_argument("--poll-only", action="store_true", help="Scheduler(listen=False)")
    parser.add_argument("--pool-max", type=int, default=0, help="default: concurrency + 4")
    parser.add_argument("--application-name", default="", help="of the scheduler's pool")
    options = parser.parse_args()
    assert process_jobs.whoami is not None  # imported for its @task registrations
    if options.freeze_after_claim:
        freeze_after_first_claim()

    pool_max = options.pool_max or options.concurrency + 4
    settings = {"application_name": options.application_name} if options.application_name else {}
    pool = await asyncpg.create_pool(
        options.dsn, min_size=min(2, pool_max), max_size=pool_max, server_settings=settings
    )
    assert pool is not None
    side_pool = pool
    if options.poll_only:
        side_pool = await asyncpg.create_pool(options.dsn, min_size=0, max_size=1)
        assert side_pool is not None
    side_jobs.configure(side_pool, options.schema)
    # The fast test timings, unless the library's own defaults are asked for.
    intervals: dict[str, Any] = {}
    if not options.default_intervals:
        intervals = {
            "lease_time": options.lease_time,
            "heartbeat_interval": options.heartbeat_interval,
            "poll_interval": 0.5,
            "reap_interval": 0.3,
            "shutdown_grace": 5,
        }
    scheduler = Scheduler(
        pool,
        max_concurrent_jobs=options.concurrency,
        schema=options.schema,
        **intervals,
        process_pool_size=options.process_pool,
        listen=not options.poll_only,
        queues=options.queues,
        tasks=[
            side_jobs.work,
            side_jobs.fail_slowly_on_first_attempt,
            side_jobs.soak,
            side_jobs.poison,
            side_jobs.kill_then_fail_then_succeed,
            side_jobs.work_then_answer,
        ],
    )
    for spec in map(json.loads, options.schedule):
        scheduler.scheduled(
            trigger_from_json(spec["trigger"]),
            schedule_id=spec["id"],
            args=(spec.get("seconds", 0.0),),
            coalesce=CoalescePolicy(spec.get("coalesce", "latest")),
            max_running=spec.get("max_running", 1),
            misfire_grace_time=spec.get("misfire_grace_time"),
        )(side_jobs.work)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with scheduler:
        print(f"READY {scheduler.worker_id}", flush=True)
        await stop.wait()
    await pool.close()
    if side_pool is not pool:
        await side_pool.close()


def freeze_after_first_claim() -> None:
    """Claims are committed, then the whole process blocks before any job starts: the
    window a crash between claim and start would hit."""
    original = Claims.claim

    async def claim_then_freeze(self: Claims, *args: Any) -> list[ClaimedJob]:
        claimed = await original(self, *args)
        if claimed:
            logging.getLogger("replica").warning(
                "CLAIMED %s", " ".join(job.lease.job_id for job in claimed)
            )
            time.sleep(3600)  # noqa: ASYNC251 - blocking on purpose: nothing starts or beats
        return claimed

    Claims.claim = claim_then_freeze  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
