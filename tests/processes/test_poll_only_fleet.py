"""A small fleet of poll-only replica processes, each on a pool of ONE server connection
(issue 21, item 2): every job runs exactly once, and the fleet's schedulers hold at most
one server connection per replica.

Four replicas: the default suite stays cheap. The 64-process run direct and the
128-process run through PgBouncer are `python -m benchmarks.fleet --poll-only` (no-op
jobs, checked by the scheduler's own attempt count and history rows; a side table would
need a second connection per replica): docs/scale.md#many-replicas.
"""

from __future__ import annotations

from collections import Counter

import asyncpg
import pytest

from scheduler import JobRequest, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import TEST_DSN, unique_schema, wait_until
from tests.support.processes import replicas

pytestmark = pytest.mark.processes

REPLICAS = 4
JOBS = 400


async def test_four_poll_only_replicas_on_one_connection_each_run_every_job_once(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    name = unique_schema("fleet")
    producer = Scheduler(pool, schema=migrated)
    flags = ("--poll-only", "--pool-max", "1", "--application-name", name)
    with replicas(TEST_DSN, migrated, REPLICAS, *flags) as fleet:
        held: list[int] = []
        job_ids = await producer.schedule_many(
            [JobRequest(side_jobs.work, args=(0.01,)) for _ in range(JOBS)]
        )

        async def drained() -> bool:
            held.append(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
                )
            )
            done = await pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'")
            return bool(done == JOBS)

        await wait_until(
            drained, timeout=120 + JOBS / 20, interval=0.1, message="the fleet to drain"
        )
        pids = {replica.pid for replica in fleet}
        logs = [replica.log() for replica in fleet]
    rows = await pool.fetch(
        f"SELECT job_id, pid, finished_at IS NOT NULL AS finished FROM {q}.executions"
    )
    assert Counter(r["job_id"] for r in rows) == Counter({job_id: 1 for job_id in job_ids})
    assert all(r["finished"] for r in rows)
    assert {r["pid"] for r in rows} <= pids and len({r["pid"] for r in rows}) > 1
    assert max(held) <= REPLICAS, held  # one server connection per scheduler, at most
    assert await pool.fetchval(f"SELECT max(attempts) FROM {q}.jobs") == 1
    for log in logs:
        assert "fenced itself" not in log and "heartbeat failed" not in log, log
