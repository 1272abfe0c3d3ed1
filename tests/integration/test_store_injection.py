"""`Scheduler(..., store=...)`: everything the scheduler reads and writes goes through the
store it is given, so a test can put a fault-injecting (or in-memory) store underneath."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import pytest

from scheduler import ConfigurationError, JobStatus
from scheduler.postgres.store import PostgresJobStore
from scheduler.store import ClaimResult, Success
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import unique_schema


class FlakyClaims(PostgresJobStore):
    """The first `failures` claims fail as a dropped connection would."""

    def __init__(self, pool: asyncpg.Pool, schema: str, failures: int) -> None:
        super().__init__(pool, schema)
        self.failures = failures
        self.claims = 0

    async def claim_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        self.claims += 1
        if self.claims <= self.failures:
            raise ConnectionResetError("injected: the connection dropped")
        return await super().claim_jobs(owner, task_names, limit, lead, queues, carried)


async def test_a_store_passed_in_carries_the_claims_and_its_faults_are_retried(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    store = FlakyClaims(pool, migrated, failures=2)
    async with make_scheduler(store=store, tasks=[jobs.record]) as scheduler:
        job_id = await scheduler.schedule(jobs.record, args=(key,))
        job = await scheduler.wait_for_job(job_id, timeout=30)
        assert job.status is JobStatus.SUCCEEDED
        assert scheduler.health.healthy
    assert store.claims > 2  # the two injected failures, then the claim that worked
    assert [c["job_id"] for c in jobs.calls(key)] == [job_id]


async def test_a_scheduler_given_a_store_and_no_pool_produces_and_runs_jobs(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    store = PostgresJobStore(pool, migrated)
    scheduler = make_scheduler(db_pool=None, store=store, tasks=[jobs.record], poll_interval=0.1)
    with pytest.raises(ConfigurationError, match="needs a database pool"):
        await scheduler.migrate()
    # A producer, not started: writes and reads go through the store.
    job_id = await scheduler.schedule(jobs.record, args=(key,))
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    # Started: no listener (no pool to listen on), the dispatcher's poll finds the job.
    async with scheduler:
        job = await scheduler.wait_for_job(job_id, timeout=30)
        assert job.status is JobStatus.SUCCEEDED
    assert [c["job_id"] for c in jobs.calls(key)] == [job_id]


def test_without_a_store_a_pool_or_dsn_is_required() -> None:
    from scheduler import Scheduler

    with pytest.raises(ConfigurationError, match="db_pool must be"):
        Scheduler(None)
