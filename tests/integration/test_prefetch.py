"""Claiming ahead (prefetch): quick jobs are claimed beyond the free slots; one that then
waits behind a slow job is handed back, unspent, and a peer runs it."""

from __future__ import annotations

import functools

import asyncpg

from scheduler import JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import holds, unique_schema, wait_until


async def test_a_job_claimed_ahead_behind_a_slow_one_goes_back_and_a_peer_runs_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    busy = make_scheduler(max_concurrent_jobs=1, prefetch=1)
    async with busy:
        # Quick jobs first: the replica learns they hold a slot only moments.
        quick = [await busy.schedule(jobs.record, args=(key, n)) for n in range(3)]
        for job_id in quick:
            await wait_until(functools.partial(_status, busy, job_id, JobStatus.SUCCEEDED))
        slow = await busy.schedule(jobs.wait_forever, args=(key,))
        await wait_until(lambda: holds(bool(jobs.calls(key, event="started"))))
        behind = await busy.schedule(jobs.record, args=(key, "behind"))
        # Claimed ahead into the one slot the slow job holds, it waits there...
        await wait_until(lambda: _status(busy, behind, JobStatus.RUNNING))
        # ...until the heartbeat hands it back (PREFETCH_MAX_WAIT): pending, unspent.
        peer = make_scheduler(max_concurrent_jobs=1, prefetch=0, tasks=[jobs.record])
        async with peer:
            await wait_until(lambda: _status(peer, behind, JobStatus.SUCCEEDED))
        attempts = await busy.get_attempts(behind)
        await busy.cancel_job(slow)
    assert [(a.outcome.value, a.worker_id) for a in attempts] == [
        ("released", busy.worker_id),
        ("succeeded", peer.worker_id),
    ]
    assert "waited too long for a free slot" in (attempts[0].error or "")
    row = await pool.fetchrow(
        f"SELECT failures, lost_leases FROM {quote_identifier(migrated)}.jobs WHERE job_id = $1",
        behind,
    )
    assert row is not None and (row["failures"], row["lost_leases"]) == (0, 0)


async def _status(scheduler: Scheduler, job_id: str, status: JobStatus) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status is status
