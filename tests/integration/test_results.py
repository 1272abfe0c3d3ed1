"""Job results and wait_for_job (issue 12 item 1); waits whatever holds the pool (issue 19
item 1)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import anyio
import asyncpg
import pytest

from scheduler import (
    JobNotFoundError,
    JobRequest,
    JobStatus,
    JobWaitTimeoutError,
    PoolExhaustedError,
    waiting,
)
from scheduler.postgres import connection
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, unique_schema, wait_until


async def test_a_job_s_return_value_is_stored_and_shown_by_get_job(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    value = {"rows": [1, 2.5, "three", None, True], "nested": {"ok": False}}
    async with make_scheduler() as scheduler:
        async_id = await scheduler.schedule(jobs.give_back, args=(value,))
        sync_id = await scheduler.schedule(jobs.give_back_sync, args=(["from", "a", "thread"],))
        none_id = await scheduler.schedule(jobs.give_back, args=(None,))
        finished = [
            await scheduler.wait_for_job(i, timeout=30) for i in (async_id, sync_id, none_id)
        ]
    assert [job.status for job in finished] == [JobStatus.SUCCEEDED] * 3
    assert finished[0].result == value
    assert finished[1].result == ["from", "a", "thread"]
    assert finished[2].result is None
    stored = await scheduler.get_job(async_id)
    assert stored is not None and stored.result == value


@pytest.mark.parametrize(("kind", "fragment"), [("object", "is a object"), ("big", "over the cap")])
async def test_a_return_value_that_cannot_be_stored_fails_the_attempt_with_a_clear_error(
    migrated: str, make_scheduler: SchedulerFactory, kind: str, fragment: str
) -> None:
    async with make_scheduler(max_result_bytes=1000) as scheduler:
        job_id = await scheduler.schedule(jobs.return_unstorable, args=(kind,), max_retries=1)
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None
    assert "the job returned a value that cannot be stored" in job.last_error
    assert fragment in job.last_error
    assert (job.attempts, job.failures) == (2, 2)  # spent its retry like any failure
    assert job.result is None


async def test_wait_for_job_returns_failed_and_cancelled_jobs_too(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        failing = await scheduler.schedule(jobs.always_fail, args=(key,))
        later = await scheduler.schedule(jobs.record, args=(key,), delay=3600)
        await scheduler.cancel_job(later)
        failed = await scheduler.wait_for_job(failing, timeout=30)
        cancelled = await scheduler.wait_for_job(later, timeout=timedelta(seconds=30))
    assert failed.status is JobStatus.FAILED and "always fails" in (failed.last_error or "")
    assert cancelled.status is JobStatus.CANCELLED


async def test_wait_for_job_times_out_with_a_typed_error_and_knows_unknown_jobs(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("never",), delay=3600)
    with pytest.raises(JobWaitTimeoutError, match="still pending") as raised:
        await producer.wait_for_job(job_id, timeout=0.3)
    assert raised.value.job_id == job_id
    with pytest.raises(JobNotFoundError, match="no job 'nope'"):
        await producer.wait_for_job("nope", timeout=5)
    job = await producer.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING  # waiting changed nothing


@pytest.mark.parametrize("started", [False, True], ids=["producer-only", "started"])
async def test_wait_for_job_is_woken_by_the_notification_not_the_poll(
    migrated: str, make_scheduler: SchedulerFactory, started: bool
) -> None:
    """With the poll backstop out of reach, only the 'finished' NOTIFY can end the wait:
    on a started scheduler through its listener, on a producer through its own LISTEN."""
    worker = make_scheduler(tasks=[jobs.give_back])
    waiter = make_scheduler()
    if started:
        await waiter.start()
    job_id = await waiter.schedule(jobs.give_back, args=(42,), delay=0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.start)
        with anyio.fail_after(30):
            job = await waiting.wait_for_job(
                waiter._store,
                waiter._finished,
                job_id,
                None,
                listening=started,
                poll_interval=math.inf,
            )
    assert job.status is JobStatus.SUCCEEDED and job.result == 42


# -- waits and the pool (issue 19 item 1) --------------------------------------------------


@contextlib.asynccontextmanager
async def small_pool(size: int, name: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        TEST_DSN, min_size=0, max_size=size, server_settings={"application_name": name}
    )
    assert pool is not None
    try:
        yield pool
    finally:
        with anyio.move_on_after(10):
            await pool.close()


async def listening_sessions(pool: asyncpg.Pool, name: str) -> int:
    """Sessions of `name` that hold a LISTEN now: their last statement was the LISTEN or the
    listener's own round trip after it (the delivery probe's, or a health check's)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND state = 'idle' AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')",
        name,
    )
    return count


@pytest.mark.parametrize("waits", [1, 3, 10])
async def test_as_many_waits_as_the_pool_has_connections_all_return(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, waits: int
) -> None:
    """Each wait used to hold a connection for its LISTEN and then wait for a second one
    to read the job: N waits on a pool of N never returned."""
    worker = make_scheduler(tasks=[jobs.give_back])
    await worker.start()
    async with small_pool(waits, unique_schema("producer")) as producer_pool:
        producer = make_scheduler(db_pool=producer_pool)
        ids = [await producer.schedule(jobs.give_back, args=(n,)) for n in range(waits)]
        with anyio.fail_after(60):  # the hang fails here instead of stalling the run
            finished = await asyncio.gather(*(producer.wait_for_job(j, timeout=30) for j in ids))
        await producer.shutdown()
    assert [job.result for job in finished] == list(range(waits))


async def test_a_thousand_waits_on_a_pool_of_two_share_one_listen_and_all_return(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    name = unique_schema("producer")
    worker = make_scheduler(tasks=[jobs.give_back], max_concurrent_jobs=50)
    async with small_pool(2, name) as producer_pool:
        producer = make_scheduler(db_pool=producer_pool)
        ids = await producer.schedule_many(
            JobRequest(jobs.give_back, args=(n,), delay=1.0) for n in range(1000)
        )
        listens: list[int] = []

        async def watch_listens() -> None:
            while True:
                listens.append(await listening_sessions(pool, name))
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_listens)
            tg.start_soon(worker.start)
            with anyio.fail_after(240):
                finished = await asyncio.gather(
                    *(producer.wait_for_job(j, timeout=180) for j in ids)
                )
            tg.cancel_scope.cancel()
        assert [job.result for job in finished] == list(range(1000))
        assert max(listens) == 1  # one LISTEN for the thousand waits

        # No wait is left: the listening connection goes back to the pool (which UNLISTENs).
        async def unlistened() -> bool:
            return await listening_sessions(pool, name) == 0

        await wait_until(unlistened, message="the shared LISTEN connection handed back")


@pytest.mark.parametrize("timeout", [0.5, 0], ids=["a wait", "a look"])
@pytest.mark.parametrize("started", [False, True], ids=["producer-only", "started"])
async def test_a_wait_times_out_on_time_while_another_task_holds_every_connection(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    started: bool,
    timeout: float,
) -> None:
    async with small_pool(3, unique_schema("producer")) as producer_pool:
        producer = make_scheduler(db_pool=producer_pool)
        if started:
            await producer.start()  # its listener holds one connection, kept ones may follow
        job_id = await producer.schedule(jobs.record, args=("never",), delay=3600)
        held = []
        while True:  # every connection the scheduler does not hold
            try:
                held.append(await producer_pool.acquire(timeout=1.0))
            except asyncio.TimeoutError:
                break
        try:
            # Used to wait for a connection for ever; a look (timeout=0) then waited for
            # the pool's 30 s acquire deadline.
            with anyio.fail_after(10):
                with pytest.raises(JobWaitTimeoutError, match="unread") as raised:
                    await producer.wait_for_job(job_id, timeout=timeout)
            assert raised.value.job_id == job_id
        finally:
            for conn in held:
                await producer_pool.release(conn)
        await producer.shutdown(grace=0)


async def test_every_call_gives_up_on_a_held_pool_with_a_typed_error(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """schedule(), cancel_job(), get_job(), migrate(), start(): none waits for ever for a
    connection that the application holds."""
    monkeypatch.setattr(connection, "ACQUIRE_SECONDS", 0.3)
    async with small_pool(2, unique_schema("producer")) as producer_pool:
        producer = make_scheduler(db_pool=producer_pool)
        held = [await producer_pool.acquire(), await producer_pool.acquire()]
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: producer.schedule(jobs.record, args=("x",)),
                lambda: producer.cancel_job("some-job"),
                lambda: producer.get_job("some-job"),
                producer.migrate,
                producer.start,
            ]
            for call in calls:
                with anyio.fail_after(10), pytest.raises(PoolExhaustedError, match="max_size"):
                    await call()
        finally:
            for conn in held:
                await producer_pool.release(conn)


async def test_a_started_scheduler_s_waits_use_its_own_listener_and_open_no_other(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    name = unique_schema("replica")
    async with small_pool(3, name) as replica_pool:
        # No health check meanwhile: the listener's last statement stays its LISTEN.
        replica = make_scheduler(
            db_pool=replica_pool, tasks=[jobs.give_back], listener_check_interval=3600
        )
        await replica.start()
        ids = await replica.schedule_many(
            JobRequest(jobs.give_back, args=(n,), delay=1.0) for n in range(200)
        )
        listens: list[int] = []

        async def watch_listens() -> None:
            while True:
                listens.append(await listening_sessions(pool, name))
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_listens)
            with anyio.fail_after(120):
                finished = await asyncio.gather(*(replica.wait_for_job(j, timeout=90) for j in ids))
            tg.cancel_scope.cancel()
        await replica.shutdown()
    assert [job.result for job in finished] == list(range(200))
    assert set(listens) == {1}  # the wake-up listener, shared by the 200 waits


async def test_a_producer_s_shutdown_closes_the_listen_of_waits_still_in_progress(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    name = unique_schema("producer")
    async with small_pool(3, name) as producer_pool:
        producer = make_scheduler(db_pool=producer_pool)
        job_id = await producer.schedule(jobs.record, args=("later",), delay=3600)

        async def listening(count: int) -> bool:
            return await listening_sessions(pool, name) == count

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: producer.wait_for_job(job_id, timeout=60))
            await wait_until(lambda: listening(1), message="the waits' LISTEN opened")
            await producer.shutdown()
            await wait_until(lambda: listening(0), message="the LISTEN closed at shutdown")
            tg.cancel_scope.cancel()


async def test_a_wait_of_zero_seconds_looks_once(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler()
    job_id = await producer.schedule(jobs.record, args=("later",), delay=3600)
    with pytest.raises(JobWaitTimeoutError, match="still pending"):
        await producer.wait_for_job(job_id, timeout=0)
    await producer.cancel_job(job_id)
    job = await producer.wait_for_job(job_id, timeout=0)
    assert job.status is JobStatus.CANCELLED
    with pytest.raises(JobNotFoundError):
        await producer.wait_for_job("nope", timeout=0)
