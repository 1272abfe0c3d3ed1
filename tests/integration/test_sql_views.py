"""The monitoring views of migration 0005, read the way psql or Grafana would."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from scheduler import IntervalTrigger, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support import jobs

TASK = "tests.support.jobs:record"
OTHER = "tests.support.jobs:always_fail"


async def test_views_show_queue_depth_lag_running_stalled_failures_and_workers(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)

    async def schedule(job_id: str, task: str = TASK, delay: str = "0") -> None:
        await pool.fetchval(
            f"SELECT {q}.schedule_job($1, job_id => $2, delay => $3::text::interval)",
            task,
            job_id,
            delay,
        )

    for job_id in ("running", "stalled"):
        await schedule(job_id)
    live = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY[$1], '1 hour', 'live-host', 11)", TASK
    )
    dead = await pool.fetchval(
        f"SELECT {q}.register_worker(ARRAY[$1], '1 hour', 'dead-host', 22)", TASK
    )
    await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1)", live)
    await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1)", dead)
    await pool.execute(
        f"UPDATE {q}.workers SET lease_expires_at = now() - interval '5 seconds'"
        " WHERE worker_id = $1",
        dead,
    )
    await schedule("due-old")
    await schedule("due-new")
    await schedule("future", delay="1 hour")
    await pool.execute(
        f"UPDATE {q}.jobs SET execution_time = now() - interval '90 seconds'"
        " WHERE job_id = 'due-old'"
    )
    for job_id, status, ended_ago in [
        ("ok", "succeeded", "10 minutes"),
        ("ok-long-ago", "succeeded", "2 hours"),
        ("bad", "failed", "5 minutes"),
        ("bad-yesterday", "failed", "30 hours"),
    ]:
        await schedule(job_id, OTHER if status == "failed" else TASK)
        await pool.execute(
            f"UPDATE {q}.jobs SET status = $2, last_error = 'boom ' || $1,"
            " finished_at = now() - $3::text::interval WHERE job_id = $1",
            job_id,
            status,
            ended_ago,
        )

    stats = {r["task_name"]: r for r in await pool.fetch(f"SELECT * FROM {q}.task_stats")}
    record = stats[TASK]
    assert (
        record["due_now"],
        record["future"],
        record["running"],
        record["succeeded_last_hour"],
        record["failed_last_hour"],
    ) == (2, 1, 2, 1, 0)
    assert 89 <= record["oldest_due_seconds"] < 120
    assert (stats[OTHER]["failed_last_hour"], stats[OTHER]["oldest_due_seconds"]) == (1, 0)

    running = {r["job_id"]: r for r in await pool.fetch(f"SELECT * FROM {q}.running_jobs")}
    assert set(running) == {"running", "stalled"}
    assert (running["running"]["worker_id"], running["running"]["hostname"]) == (
        live,
        "live-host",
    )
    assert (running["running"]["attempt"], running["running"]["pid"]) == (1, 11)
    assert running["running"]["runtime"] >= timedelta(0)

    [stalled] = await pool.fetch(f"SELECT * FROM {q}.stalled_jobs")
    assert (stalled["job_id"], stalled["worker_id"], stalled["hostname"]) == (
        "stalled",
        dead,
        "dead-host",
    )
    assert stalled["stalled_for"] >= timedelta(seconds=5)

    failures = await pool.fetch(f"SELECT * FROM {q}.recent_failures")
    assert [(r["job_id"], r["last_error"]) for r in failures] == [("bad", "boom bad")]

    workers = await pool.fetch(f"SELECT * FROM {q}.live_workers")
    assert [(w["worker_id"], w["hostname"], w["running_jobs"]) for w in workers] == [
        (live, "live-host", 1)
    ]


async def test_schedule_status_shows_the_next_fire_time(pool: asyncpg.Pool, migrated: str) -> None:
    q = quote_identifier(migrated)
    producer = Scheduler(pool, schema=migrated)
    await producer.add_schedule(
        jobs.record, IntervalTrigger(minutes=5), schedule_id="every-5", args=("v",)
    )
    await producer.add_schedule(
        jobs.record, IntervalTrigger(hours=1), schedule_id="paused", args=("v",)
    )
    await producer.pause_schedule("paused")
    rows = {r["schedule_id"]: r for r in await pool.fetch(f"SELECT * FROM {q}.schedule_status")}
    assert rows["every-5"]["paused"] is False and rows["paused"]["paused"] is True
    assert timedelta(0) < rows["every-5"]["next_fire_in"] <= timedelta(minutes=5)
    assert rows["every-5"]["unfinished_jobs"] == 0
