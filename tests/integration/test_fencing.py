"""What a replica does with attempts its lease no longer covers, and with attempts the
database says it holds but that it is not running (issue 9 items 1 and 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import anyio
import asyncpg

from scheduler import JobStatus
from scheduler.store import ClaimResult, Success
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, holds, unique_schema, wait_until


async def test_jobs_claimed_while_the_replica_was_fenced_never_start(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """The claim commits, but the replica fences itself (lease lost) before the reply is
    handled: nothing of that claim may run here; the job runs once, after the old lease
    lapses, as attempt 2."""
    key = unique_schema("k")
    scheduler = make_scheduler()
    store = scheduler._store
    real_claim = store.claim_jobs
    fenced: list[list[str]] = []

    async def claim_then_lose_the_lease(
        owner: UUID,
        names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        result = await real_claim(owner, names, limit, lead, queues, carried)
        claimed = result.claimed
        if claimed and not fenced:
            fenced.append([job.lease.job_id for job in claimed])
            scheduler._started().heartbeat.fence("test: the lease was lost during the claim")
        return result

    store.claim_jobs = claim_then_lose_the_lease  # type: ignore[method-assign,assignment]
    await scheduler.start()
    job_id = await scheduler.schedule(jobs.record, args=(key,), max_retries=0)
    await wait_until(lambda: has_status(scheduler, job_id, JobStatus.SUCCEEDED), timeout=20)
    assert fenced == [[job_id]]
    assert [call["attempt"] for call in jobs.calls(key)] == [2]
    job = await scheduler.get_job(job_id)
    assert job is not None and (job.attempts, job.lost_leases) == (2, 1)


async def test_a_claim_whose_reply_is_lost_is_handed_back_and_runs(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Issue 9 item 2: the claim commits but its reply never arrives. The replica's lease
    stays live (so the orphan sweep never sees the row); the heartbeat must hand it back."""
    key = unique_schema("k")
    scheduler = make_scheduler()
    store = scheduler._store
    real_claim = store.claim_jobs
    lost: list[str] = []

    async def claim_and_lose_the_reply(
        owner: UUID,
        names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        result = await real_claim(owner, names, limit, lead, queues, carried)
        claimed = result.claimed
        if claimed and not lost:
            lost.extend(job.lease.job_id for job in claimed)
            raise ConnectionResetError("test: the reply of a committed claim was lost")
        return result

    store.claim_jobs = claim_and_lose_the_reply  # type: ignore[method-assign,assignment]
    await scheduler.start()
    job_id = await scheduler.schedule(jobs.record, args=(key,), max_retries=0)
    await wait_until(lambda: has_status(scheduler, job_id, JobStatus.SUCCEEDED), timeout=20)
    assert lost == [job_id]
    assert [call["attempt"] for call in jobs.calls(key)] == [2]
    job = await scheduler.get_job(job_id)
    assert job is not None and (job.attempts, job.lost_leases, job.failures) == (2, 1, 0)
    assert job.lease_owner is None


async def test_an_outcome_write_that_stalls_is_given_up_and_the_job_handed_back(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Issue 9 item 3: a write that never returns (a stalled socket) is abandoned at the
    fence deadline; the heartbeat then hands the attempt back and it runs again."""
    key = unique_schema("k")
    scheduler = make_scheduler()
    store = scheduler._store
    real_record = store.record_successes
    stalled: list[Any] = []

    async def stall_once(successes: Sequence[Success]) -> set[str]:
        if not stalled:
            stalled.append(successes)
            await anyio.sleep_forever()
        return await real_record(successes)

    store.record_successes = stall_once  # type: ignore[method-assign]
    async with scheduler:
        job_id = await scheduler.schedule(jobs.record, args=(key,))
        await wait_until(lambda: has_status(scheduler, job_id, JobStatus.SUCCEEDED), timeout=20)
    assert [call["attempt"] for call in jobs.calls(key)] == [1, 2]
    job = await scheduler.get_job(job_id)
    assert job is not None and (job.attempts, job.lost_leases) == (2, 1)


async def test_attempts_are_tracked_per_attempt_not_per_job(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A sync attempt whose lease was lost keeps its thread (and its slot) while the same
    job runs again here as a new attempt: both are counted, neither hides the other."""
    key = unique_schema("k")
    scheduler = make_scheduler(max_concurrent_jobs=3)
    async with scheduler:
        job_id = await scheduler.schedule(jobs.sleep_sync, args=(key, 3.0), max_retries=0)
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        scheduler._started().heartbeat.fence("test: lease lost mid-job")
        await wait_until(lambda: holds(len(jobs.calls(key, event="started")) == 2), timeout=20)
        running = scheduler._started().running
        attempts = sorted(
            attempt for attempt_job, attempt in running.attempt_keys() if attempt_job == job_id
        )
        assert attempts == [1, 2]
        assert running.free_slots == 1
        await wait_until(lambda: has_status(scheduler, job_id, JobStatus.SUCCEEDED), timeout=20)
    assert sorted(c["attempt"] for c in jobs.calls(key, event="started")) == [1, 2]
