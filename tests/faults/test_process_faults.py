"""Fault injection with real processes: replicas that crash at the worst moment, a job
that kills its worker, a database that stops answering, a storm of claims."""

from __future__ import annotations

import os
import signal
from collections import Counter
from functools import partial

import asyncpg
import pytest

from scheduler import JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from scheduler.tasks import task_name_for
from tests.support import jobs, side_jobs
from tests.support.db import TEST_DSN, has_status, holds, unique_schema, wait_until
from tests.support.processes import Replica, ThrowawayCluster, replicas

pytestmark = pytest.mark.processes


async def test_a_crash_between_claim_commit_and_job_start_loses_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    with replicas(TEST_DSN, migrated, 1, "--freeze-after-claim") as [doomed]:
        ids = [await producer.schedule(side_jobs.work, args=(0.01,)) for _ in range(5)]
        await wait_until(lambda: holds("CLAIMED" in doomed.log()), message="a claim")
        claimed = doomed.log().split("CLAIMED ", 1)[1].split("\n", 1)[0].split()
        doomed.signal(signal.SIGKILL)
    assert claimed
    with replicas(TEST_DSN, migrated, 1) as [peer]:
        for job_id in ids:
            await wait_until(partial(has_status, producer, job_id, JobStatus.SUCCEEDED))
    for job_id in claimed:
        job = await producer.get_job(job_id)
        assert job is not None and job.attempts == 2  # the lost attempt was counted
    runs = await pool.fetch(f"SELECT job_id, attempt, pid FROM {q}.executions")
    # The claimed jobs never started on the crashed replica; each ran once, on the peer.
    assert sorted(r["job_id"] for r in runs) == sorted(ids)
    assert {r["pid"] for r in runs} == {peer.pid}


async def run_with_one_replica_replaced_when_it_dies(
    producer: Scheduler, schema: str, job_id: str
) -> int:
    """Keep one replica alive (a new one after each death) until the job is finished;
    return how many replicas died."""
    current: list[Replica] = []
    deaths = 0

    async def finished_while_replacing_dead_replicas() -> bool:
        nonlocal deaths
        if current and current[0].process.poll() is not None:
            deaths += 1
            current.pop().stop()
        job = await producer.get_job(job_id)
        if job is not None and job.is_finished:
            return True
        if not current:
            current.append(Replica(TEST_DSN, schema))
        return False

    try:
        await wait_until(finished_while_replacing_dead_replicas, timeout=90, interval=0.1)
    finally:
        for replica in current:
            replica.stop()
    return deaths


async def test_a_job_that_kills_its_worker_every_time_ends_failed(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    job_id = await producer.schedule(side_jobs.poison, max_retries=0)
    deaths = await run_with_one_replica_replaced_when_it_dies(producer, migrated, job_id)
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.attempts == 3  # 1 + max_retries (0) + orphan_retries (2)
    assert job.last_error is not None and "lost its lease" in job.last_error
    assert deaths == 3
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.executions") == 3


async def test_a_lost_lease_does_not_spend_max_retries(pool: asyncpg.Pool, migrated: str) -> None:
    """Issue 9 item 4: max_retries=1; attempt 1 kills its process, attempt 2 raises, and
    attempt 3 still runs (and succeeds). Attempt numbers only go up."""
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    job_id = await producer.schedule(side_jobs.kill_then_fail_then_succeed, max_retries=1)
    deaths = await run_with_one_replica_replaced_when_it_dies(producer, migrated, job_id)
    assert deaths == 1
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert (job.attempts, job.failures, job.lost_leases) == (3, 1, 1)
    runs = await pool.fetch(
        f"SELECT attempt, finished_at IS NOT NULL AS ok, failed_at IS NOT NULL AS failed"
        f" FROM {q}.executions ORDER BY id"
    )
    assert [(r["attempt"], r["ok"], r["failed"]) for r in runs] == [
        (1, False, False),  # killed
        (2, False, True),  # raised
        (3, True, False),
    ]


async def test_a_listen_connection_that_stops_answering_is_replaced(
    cluster: ThrowawayCluster,
) -> None:
    key = unique_schema("k")
    pool = await asyncpg.create_pool(cluster.dsn, min_size=2, max_size=8)
    assert pool is not None
    scheduler = Scheduler(
        pool,
        schema="frozen_listen",
        poll_interval=3600,
        lease_time=2,
        heartbeat_interval=0.4,
        listener_check_interval=0.3,
        listener_check_timeout=0.5,
        tasks=[jobs.record],
    )
    stuck_backend = None
    try:
        async with scheduler:
            listener = scheduler._started().listener
            assert listener is not None
            stuck_backend = listener.server_pid
            assert stuck_backend is not None
            os.kill(stuck_backend, signal.SIGSTOP)  # open, but silent
            await wait_until(lambda: holds(listener.connections_made >= 2))
            # Notifications arrive on the new connection (polling is off).
            await scheduler.schedule(jobs.record, args=(key,))
            await wait_until(lambda: holds(jobs.calls(key)), timeout=10)
    finally:
        if stuck_backend is not None:
            os.kill(stuck_backend, signal.SIGCONT)
        await pool.close()


async def test_a_replica_that_cannot_reach_the_database_fences_itself(
    cluster: ThrowawayCluster,
) -> None:
    key = unique_schema("k")
    pool = await asyncpg.create_pool(cluster.dsn, min_size=2, max_size=8)
    assert pool is not None
    scheduler = Scheduler(
        pool,
        schema="frozen_db",
        lease_time=2,
        heartbeat_interval=0.3,
        reap_interval=0.3,
        poll_interval=0.5,
    )
    try:
        async with scheduler:
            job_id = await scheduler.schedule(jobs.hang_on_first_attempt, args=(key,))
            await wait_until(lambda: holds(jobs.calls(key, event="started")))
            first_identity = scheduler.worker_id
            cluster.freeze()  # heartbeats hang: no answer, no error
            try:
                # The replica stops its job on its own, while the database can hand
                # nothing to anybody.
                await wait_until(lambda: holds(jobs.calls(key, event="interrupted")))
                assert scheduler.worker_id != first_identity
            finally:
                cluster.thaw()
            # Once the database answers again, the job is reclaimed and runs (attempt 2).
            await wait_until(
                partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED), timeout=30
            )
        assert [c["event"] for c in jobs.calls(key)] == [
            "started",
            "interrupted",
            "started",
            "finished",
        ]
    finally:
        await pool.close()


async def test_a_claim_storm_of_four_replicas_runs_every_job_exactly_once(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, args) SELECT $1, '[0]' FROM generate_series(1, 10000)",
        task_name_for(side_jobs.work),
    )
    with replicas(TEST_DSN, migrated, 4):
        await wait_until(
            lambda: _count(
                pool, f"SELECT count(*) = 10000 FROM {q}.jobs WHERE status = 'succeeded'"
            ),
            timeout=240,
            interval=0.5,
            message="10,000 jobs to succeed",
        )
    runs = Counter(r["job_id"] for r in await pool.fetch(f"SELECT job_id FROM {q}.executions"))
    assert len(runs) == 10000 and set(runs.values()) == {1}
    assert await pool.fetchval(f"SELECT max(attempts) FROM {q}.jobs") == 1
    assert await pool.fetchval(f"SELECT count(DISTINCT pid) FROM {q}.executions") == 4


async def _count(pool: asyncpg.Pool, sql: str) -> bool:
    return bool(await pool.fetchval(sql))
