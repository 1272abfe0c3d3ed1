"""start() and shutdown() leave nothing behind, startup errors arrive as themselves, and a
fatal background error leaves a state a health check can read (issue 9 item 8)."""

from __future__ import annotations

import gc
import logging
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from scheduler import ConfigurationError, JobStatus, Scheduler, SchedulerState
from scheduler.metrics import PrometheusMetrics
from scheduler.postgres.listener import Listener
from scheduler.postgres.sql import quote_identifier
from scheduler.services.ticker import Ticker
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, holds, unique_schema, wait_until


async def workers(pool: asyncpg.Pool, schema: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(schema)}.workers"))


async def test_a_cancelled_start_leaves_nothing_running(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, monkeypatch: Any
) -> None:
    async def listen_slowly(self: Listener, **_: Any) -> None:
        await anyio.sleep_forever()  # start() waits for this to be ready

    monkeypatch.setattr(Listener, "run", listen_slowly)
    scheduler = make_scheduler()
    with anyio.move_on_after(0.5) as waited:
        await scheduler.start()
    assert waited.cancelled_caught
    assert scheduler.state is SchedulerState.STOPPED
    main_task = scheduler._started().main_task
    assert main_task is not None and main_task.done()
    assert await workers(pool, migrated) == 0
    with anyio.fail_after(1):
        await scheduler.shutdown()  # returns at once


async def test_a_startup_error_reaches_the_caller_as_itself(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, monkeypatch: Any
) -> None:
    async def refuse(self: Listener, task_status: Any) -> None:
        raise ConnectionRefusedError("test: no LISTEN connection for you")

    monkeypatch.setattr(Listener, "_listen_until_lost", refuse)
    scheduler = make_scheduler()
    with pytest.raises(ConnectionRefusedError, match="no LISTEN connection"):
        await scheduler.start()
    assert scheduler.state is SchedulerState.STOPPED
    main_task = scheduler._started().main_task
    assert main_task is not None and main_task.done()
    assert await workers(pool, migrated) == 0


async def test_a_fatal_background_error_is_visible_in_the_state(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, monkeypatch: Any
) -> None:
    crash = anyio.Event()

    async def crash_on_demand(self: Ticker) -> None:
        await crash.wait()
        raise RuntimeError("test: a bug in a background service")

    monkeypatch.setattr(Ticker, "run", crash_on_demand)
    scheduler = make_scheduler()
    await scheduler.start()
    assert scheduler.state is SchedulerState.RUNNING and scheduler.failure is None
    crash.set()
    await wait_until(lambda: holds(scheduler.state is SchedulerState.FAILED))
    assert isinstance(scheduler.failure, RuntimeError)
    assert await workers(pool, migrated) == 0  # it unregistered: peers take over at once
    await scheduler.shutdown()
    assert scheduler.state is SchedulerState.FAILED


async def test_states_of_a_normal_life(migrated: str, make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler(tasks=[jobs.record])
    states = [scheduler.state]
    async with scheduler:
        states.append(scheduler.state)
    states.append(scheduler.state)
    assert states == [SchedulerState.NEW, SchedulerState.RUNNING, SchedulerState.STOPPED]


async def test_a_shutdown_right_after_start_logs_no_error(
    migrated: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Services stop between passes: a service cancelled while its pool connection was
    still being opened left asyncpg a failed future, logged at ERROR when collected."""
    pool = await asyncpg.create_pool(TEST_DSN, min_size=1, max_size=10)
    assert pool is not None
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                scheduler = Scheduler(pool, schema=migrated, lease_time=2, heartbeat_interval=0.4)
                await scheduler.start()
                await scheduler.shutdown()
    finally:
        await pool.close()
    gc.collect()
    await anyio.lowlevel.checkpoint()  # let the loop report what the collection found
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_replica_whose_every_claim_fails_reports_it_until_claims_work_again(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Issue 19 (item 2): RUNNING and heartbeating, yet claiming nothing, used to look
    healthy. A real failure: the database refuses every claim of a due job."""
    metrics = PrometheusMetrics(queue_depth_interval=None)
    scheduler = make_scheduler(tasks=[jobs.record], extensions=[metrics])
    await scheduler.start()
    assert scheduler.health.healthy and scheduler.health.describe() == "healthy"
    jobs_table = f"{quote_identifier(migrated)}.jobs"
    await pool.execute(
        f"""
        CREATE FUNCTION {quote_identifier(migrated)}.refuse_claims() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'claims refused by the test'; END $$;
        CREATE TRIGGER refuse_claims BEFORE UPDATE ON {jobs_table} FOR EACH ROW
        WHEN (OLD.status = 'pending' AND NEW.status = 'running')
        EXECUTE FUNCTION {quote_identifier(migrated)}.refuse_claims();
        """
    )
    key = unique_schema("k")
    job_id = await scheduler.schedule(jobs.record, args=(key,))
    await wait_until(lambda: holds(not scheduler.health.healthy), timeout=30)
    health = scheduler.health
    assert health.state is SchedulerState.RUNNING  # alive, but doing nothing useful
    assert not health.claiming
    assert health.claims_failing_for > scheduler.config.lease_time
    assert "claims refused by the test" in (health.claim_error or "")
    assert "every claim has failed" in health.describe()
    assert metrics.registry.get_sample_value("scheduler_healthy") == 0
    failing_for = metrics.registry.get_sample_value("scheduler_claims_failing_seconds")
    assert failing_for is not None and failing_for > scheduler.config.lease_time

    await pool.execute(f"DROP TRIGGER refuse_claims ON {jobs_table}")
    job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    await wait_until(lambda: holds(scheduler.health.healthy))
    assert scheduler.health.claims_failing_for == 0 and scheduler.health.claim_error is None
    assert metrics.registry.get_sample_value("scheduler_healthy") == 1
    await scheduler.shutdown()
    assert not scheduler.health.healthy  # stopped: not ready


async def test_starting_on_a_pool_of_one_is_refused_at_once(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Its listener would hold the only connection for good and everything else wait for
    it (issue 19: every wait has a deadline, whatever the pool size)."""
    single = await asyncpg.create_pool(TEST_DSN, min_size=0, max_size=1)
    assert single is not None
    try:
        scheduler = make_scheduler(db_pool=single, tasks=[jobs.record])
        with anyio.fail_after(10), pytest.raises(ConfigurationError, match="at least 2"):
            await scheduler.start()
        assert scheduler.state is SchedulerState.NEW
        # A producer on that pool works: its waits poll instead of listening.
        job_id = await scheduler.schedule(jobs.record, args=("x",), delay=3600)
        await scheduler.cancel_job(job_id)
        job = await scheduler.wait_for_job(job_id, timeout=10)
        assert job.status is JobStatus.CANCELLED
    finally:
        await single.close()
