"""Wake-ups: NOTIFY, the next-due timer, the LISTEN connection's recovery, polling."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from functools import partial

import anyio
import asyncpg
import pytest

from scheduler import JobRequest, JobStatus
from scheduler.postgres.listener import Listener
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, holds, unique_schema, wait_until

NO_POLLING = {"poll_interval": 3600.0}


async def test_a_job_scheduled_elsewhere_starts_by_notification(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(**NO_POLLING, tasks=[jobs.record]) as worker:
        await make_scheduler().schedule(jobs.record, args=(key,))
        await wait_until(lambda: holds(jobs.calls(key)), timeout=10)
        assert worker.worker_id is not None


async def test_a_future_job_starts_by_the_timer_without_polling(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(**NO_POLLING) as worker:
        job_id = await worker.schedule(jobs.record, args=(key,), delay=0.8)
        await wait_until(lambda: holds(jobs.calls(key)), timeout=10)
        job = await worker.get_job(job_id)
        assert job is not None and job.started_at is not None
        assert job.started_at >= job.execution_time  # never early, by the database clock


async def test_jobs_claimed_ahead_of_their_due_time_never_start_early(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Claims run CLAIM_LEAD ahead so their commit is paid before the due time; the job
    itself must still start at or after its due time (host clock = database clock here)."""
    key = unique_schema("k")
    async with make_scheduler(**NO_POLLING) as worker:
        now: datetime = await pool.fetchval("SELECT now()")
        first = now + timedelta(milliseconds=300)
        dues = [first + timedelta(milliseconds=7 * n) for n in range(40)]
        ids = await worker.schedule_many(
            JobRequest(jobs.record, execution_time=due, args=(key,)) for due in dues
        )
        await wait_until(lambda: holds(len(jobs.calls(key)) == len(ids)), timeout=10)
    started = {call["job_id"]: call["wall"] for call in jobs.calls(key)}
    for job_id, due in zip(ids, dues, strict=True):
        assert started[job_id] >= due.timestamp(), f"{job_id} started before it was due"
        job = await worker.get_job(job_id)
        assert job is not None and job.started_at is not None and job.started_at >= due
    # A claim before the due time records the due time as the start (greatest(now(), due)).
    claimed_early = await pool.fetchval(
        f"SELECT count(*) FROM {quote_identifier(migrated)}.jobs WHERE started_at = execution_time"
    )
    assert claimed_early > 0, "the claim-ahead path was exercised"


async def test_a_killed_listen_connection_is_replaced_and_work_caught_up(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(**NO_POLLING, tasks=[jobs.record]) as worker:
        listener = worker._started().listener
        assert listener is not None
        assert listener.connections_made == 1
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", listener.server_pid)
        await wait_until(lambda: holds(listener.connections_made >= 2), timeout=10)
        # Notifications reach the new connection.
        await make_scheduler().schedule(jobs.record, args=(key,))
        await wait_until(lambda: holds(jobs.calls(key)), timeout=10)


async def test_polling_alone_delivers_when_notify_is_unavailable(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    table = f"{quote_identifier(migrated)}.jobs"
    for trigger in ("jobs_notify_insert", "jobs_notify_update"):
        await pool.execute(f"DROP TRIGGER {trigger} ON {table}")
    key = unique_schema("k")
    async with make_scheduler(poll_interval=0.3) as worker:
        ids = [await worker.schedule(jobs.record, args=(key, i)) for i in range(5)]
        await wait_until(lambda: holds(len(jobs.calls(key)) == 5), timeout=10)
        for job_id in ids:
            await wait_until(partial(has_status, worker, job_id, JobStatus.SUCCEEDED))


async def test_a_delivery_check_without_a_free_pool_connection_is_made_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The listener checks that its own notifications come back by sending one through
    the pool. A pool with no free connection must not hold the listener up without a
    deadline, nor make it conclude that notifications are lost: it checks again later."""
    caplog.set_level(logging.INFO, logger="scheduler.listener")
    pool = await asyncpg.create_pool(TEST_DSN, min_size=0, max_size=2)
    unheard: list[bool] = []
    listener = Listener(
        pool,
        f"check_{uuid.uuid4().hex}",
        on_due=lambda _: None,
        on_schedule=lambda _: None,
        on_cancel=lambda _: None,
        on_reconnect=lambda: None,
        check_interval=0.2,
        check_timeout=0.3,
        on_unheard=lambda: unheard.append(True),
    )
    try:
        held = await pool.acquire()  # the listener's LISTEN takes the other one
        async with anyio.create_task_group() as tg:
            await tg.start(listener.run)
            await wait_until(lambda: holds("could not check" in caplog.text))
            assert listener.hears_itself is None and not unheard
            await pool.release(held)
            await wait_until(lambda: holds(listener.hears_itself is True))
            assert not unheard
            tg.cancel_scope.cancel()
    finally:
        pool.terminate()  # a failed check may leave `held` out: close() would wait for it
