"""Issue 11 with real replica processes: fleet-wide limits, lock keys and rate limits hold
across four replicas, are used (not just respected) while a backlog exists, and survive a
replica SIGKILLed mid-job."""

from __future__ import annotations

import signal
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import anyio
import anyio.to_thread
import asyncpg
import pytest

from scheduler import Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import Replica, replicas

pytestmark = pytest.mark.processes

Interval = tuple[datetime, datetime, str]


async def attempt_intervals(pool: asyncpg.Pool, schema: str, killed_at: datetime) -> list[Interval]:
    """Each attempt's (start, end, lock key) as the jobs saw it. An attempt killed mid-job
    never wrote its end: its code stopped when its process died, at `killed_at` at the
    latest (the database went on counting it as running until it was reaped, so the
    limit held with room to spare)."""
    q = quote_identifier(schema)
    rows = await pool.fetch(
        f"SELECT e.job_id, e.attempt, e.started_at,"
        f"       coalesce(e.finished_at, e.failed_at, e.cancelled_at) AS ended_at,"
        f"       coalesce(j.lock_key, '') AS lock_key"
        f" FROM {q}.executions e JOIN {q}.jobs j USING (job_id) ORDER BY e.started_at"
    )
    by_job: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_job[row["job_id"]].append(row)
    intervals: list[Interval] = []
    for attempts in by_job.values():
        attempts.sort(key=lambda r: r["attempt"])
        for this, following in zip(attempts, [*attempts[1:], None], strict=True):
            end = this["ended_at"]
            if end is None:
                assert following is not None, "a killed attempt was run again"
                end = killed_at
            intervals.append((this["started_at"], end, this["lock_key"]))
    return intervals


def max_overlap(intervals: list[Interval]) -> int:
    """The most attempts running at one instant (an end at t comes before a start at t)."""
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    current = peak = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


async def kill_one_mid_job(pool: asyncpg.Pool, schema: str, fleet: list[Replica]) -> datetime:
    """SIGKILL a replica while it runs a job; returns a time after it died."""
    q = quote_identifier(schema)

    async def busy_replica() -> Replica | None:
        owners = {
            str(r["lease_owner"])
            for r in await pool.fetch(f"SELECT lease_owner FROM {q}.jobs WHERE status = 'running'")
        }
        return next((replica for replica in fleet if replica.worker_id in owners), None)

    victim = await wait_until(busy_replica, message="a replica running a job")
    assert victim is not None
    victim.signal(signal.SIGKILL)
    await anyio.to_thread.run_sync(victim.process.wait)
    return datetime.now(timezone.utc)


async def all_succeeded(pool: asyncpg.Pool, schema: str, count: int) -> bool:
    done = await pool.fetchval(
        f"SELECT count(*) FROM {quote_identifier(schema)}.jobs WHERE status = 'succeeded'"
    )
    return bool(done == count)


async def test_a_queue_limit_is_reached_never_exceeded_across_four_replicas_and_a_kill(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    await producer.set_queue_limits("default", concurrency_limit=3)
    with replicas(TEST_DSN, migrated, 4) as fleet:
        for _ in range(40):
            await producer.schedule(side_jobs.work, args=(0.3,))
        killed_at = await kill_one_mid_job(pool, migrated, fleet)
        await wait_until(lambda: all_succeeded(pool, migrated, 40), timeout=90)
    intervals = await attempt_intervals(pool, migrated, killed_at)
    assert max_overlap(intervals) == 3  # the limit was used, and never exceeded


async def test_lock_keys_serialise_their_jobs_across_four_replicas_and_a_kill(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    keys = ["customer-1", "customer-2", "customer-3"]
    with replicas(TEST_DSN, migrated, 4) as fleet:
        for n in range(36):
            await producer.schedule(side_jobs.work, args=(0.2,), lock_key=keys[n % 3])
        killed_at = await kill_one_mid_job(pool, migrated, fleet)
        await wait_until(lambda: all_succeeded(pool, migrated, 36), timeout=90)
    intervals = await attempt_intervals(pool, migrated, killed_at)
    for key in keys:
        assert max_overlap([i for i in intervals if i[2] == key]) == 1
    assert max_overlap(intervals) == 3  # different keys ran side by side


async def test_a_rate_limit_holds_fleet_wide_and_a_backlog_drains_at_the_rate(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """200 jobs at 20 per second with a burst of 5, four replicas: no sliding second holds
    more than 20 + 5 starts (as the database recorded them), and the backlog drains within
    10 % of 200 / 20 seconds. The queue is paused while the backlog builds and resumed at
    once, so the replicas meet the whole backlog together."""
    await pool.execute(side_jobs.side_table_sql(migrated))
    q = quote_identifier(migrated)
    producer = Scheduler(pool, schema=migrated)
    await producer.pause_queue("default")
    await producer.set_queue_limits("default", rate_limit=20, rate_period=1, rate_burst=5)
    with replicas(TEST_DSN, migrated, 4):
        for _ in range(200):
            await producer.schedule(side_jobs.work, args=(0.0,))
        await producer.resume_queue("default")
        await wait_until(lambda: all_succeeded(pool, migrated, 200), timeout=60)
    starts = [
        r["started_at"]
        for r in await pool.fetch(f"SELECT started_at FROM {q}.jobs ORDER BY started_at")
    ]
    second = timedelta(seconds=1)
    busiest = max(
        sum(1 for t in starts[i:] if t < start + second) for i, start in enumerate(starts)
    )
    assert busiest <= 20 + 5
    assert starts[-1] - starts[0] <= timedelta(seconds=1.1 * 200 / 20)
    workers = await pool.fetchval(f"SELECT count(DISTINCT worker_id) FROM {q}.executions")
    assert workers > 1  # the limit held across replicas, not inside one
