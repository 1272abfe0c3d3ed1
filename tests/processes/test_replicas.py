"""Horizontal scaling and crash recovery with real replica processes."""

from __future__ import annotations

import signal
from collections import Counter

import asyncpg
import pytest

from scheduler import JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import replicas

pytestmark = pytest.mark.processes


async def _count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    return int(await pool.fetchval(sql, *args))


async def test_three_replicas_share_300_jobs_and_survive_a_sigkill(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    with replicas(TEST_DSN, migrated, 3) as (victim, *survivors):
        job_ids = [await producer.schedule(side_jobs.work, args=(0.2,)) for _ in range(300)]

        async def victim_is_busy() -> bool:
            # Jobs whose code has started (its row is written), not only claimed: a claim
            # commits a moment before its jobs start, and a SIGKILL in between cuts none.
            return (
                await _count(
                    pool,
                    f"SELECT count(*) FROM {q}.executions WHERE pid = $1 AND finished_at IS NULL",
                    victim.pid,
                )
                >= 3
            )

        await wait_until(victim_is_busy, message="the victim to be running jobs")
        victim.signal(signal.SIGKILL)

        async def all_succeeded() -> bool:
            return (
                await _count(pool, f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'")
                == 300
            )

        await wait_until(all_succeeded, timeout=60, message="all 300 jobs to succeed")

    rows = await pool.fetch(
        f"SELECT e.job_id, e.attempt, e.pid, e.finished_at IS NOT NULL AS finished,"
        f" j.attempts AS final_attempt FROM {q}.executions e JOIN {q}.jobs j USING (job_id)"
    )
    survivor_pids = {r.pid for r in survivors}
    finished_by_survivors = Counter(
        r["job_id"] for r in rows if r["finished"] and r["pid"] in survivor_pids
    )
    final_runs = [r for r in rows if r["attempt"] == r["final_attempt"]]
    # Every job completed exactly once as its recorded attempt; the survivors never ran a
    # job twice.
    assert Counter(r["job_id"] for r in final_runs) == Counter({job_id: 1 for job_id in job_ids})
    assert all(r["finished"] for r in final_runs)
    assert all(count == 1 for count in finished_by_survivors.values())
    # Attempts the SIGKILL cut short were run again, by a survivor, after their lease.
    interrupted = [r for r in rows if r["pid"] == victim.pid and not r["finished"]]
    assert interrupted, "the victim was killed mid-job"
    final_by_job = {r["job_id"]: r for r in final_runs}
    for cut in interrupted:
        final = final_by_job[cut["job_id"]]
        assert final["attempt"] > cut["attempt"] and final["pid"] in survivor_pids
    assert len({r["pid"] for r in rows}) == 3  # all three replicas took a share


async def test_a_zombie_replica_cannot_overwrite_the_attempt_that_replaced_it(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    with replicas(TEST_DSN, migrated, 1) as [zombie]:
        job_id = await producer.schedule(
            side_jobs.fail_slowly_on_first_attempt, args=(3.0,), max_retries=3
        )

        async def running_on_zombie() -> bool:
            return (
                await _count(
                    pool,
                    f"SELECT count(*) FROM {q}.executions WHERE job_id = $1 AND pid = $2",
                    job_id,
                    zombie.pid,
                )
                == 1
            )

        await wait_until(running_on_zombie)
        zombie.signal(signal.SIGSTOP)  # frozen past its 2 s lease, mid-attempt
        with replicas(TEST_DSN, migrated, 1) as [peer]:

            async def peer_succeeded() -> bool:
                job = await producer.get_job(job_id)
                return job is not None and job.status is JobStatus.SUCCEEDED

            await wait_until(peer_succeeded, timeout=30, message="the peer's attempt")
            zombie.signal(signal.SIGCONT)

            async def zombie_gave_up() -> bool:
                log = zombie.log()
                # It fenced itself, and its attempt ended without a write landing: either
                # cancelled (abandoned) or finished and refused by the fence (discarded).
                return "fenced itself" in log and ("abandoned" in log or "discarded" in log)

            await wait_until(zombie_gave_up, timeout=20, message="the zombie to give up")
            job = await producer.get_job(job_id)
            assert job is not None
            assert (job.status, job.attempts, job.last_error) == (JobStatus.SUCCEEDED, 2, None)
            runs = await pool.fetch(
                f"SELECT attempt, pid FROM {q}.executions WHERE job_id = $1 ORDER BY attempt",
                job_id,
            )
            assert [(r["attempt"], r["pid"]) for r in runs] == [(1, zombie.pid), (2, peer.pid)]
