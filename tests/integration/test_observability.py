"""Middleware and events on a real scheduler (issue 14, item 1): the chain's order per
scheduler and per task, a session per job, skipping, hooks that raise, and the events of
every kind of outcome."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from scheduler import AttemptInfo, CallNext, DateTrigger, EventKind, JobEvent, JobStatus
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import observed_jobs
from tests.support.db import wait_until
from tests.support.observed_jobs import LOG


def new_key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def recording(name: str) -> Callable[[AttemptInfo, CallNext], Any]:
    async def layer(attempt: AttemptInfo, call_next: CallNext) -> Any:
        key = str(attempt.args[0])
        observed_jobs.note(key, f"{name} before")
        try:
            return await call_next()
        finally:
            observed_jobs.note(key, f"{name} after")

    return layer


async def test_scheduler_middleware_wraps_task_middleware_and_the_job_sees_its_session(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    async_key, sync_key = new_key(), new_key()
    middleware = [recording("outer"), observed_jobs.open_session]
    async with make_scheduler(middleware=middleware) as scheduler:
        async_id = await scheduler.schedule(observed_jobs.uses_session, args=(async_key,))
        sync_id = await scheduler.schedule(observed_jobs.uses_session_sync, args=(sync_key,))
        async_job = await scheduler.wait_for_job(async_id, timeout=15)
        sync_job = await scheduler.wait_for_job(sync_id, timeout=15)
    # The session a middleware opened is the job's, also in a synchronous job's thread.
    assert async_job.result == f"session-{async_id}-1"
    assert sync_job.result == f"session-{sync_id}-1"
    assert LOG[async_key] == [
        "outer before",
        "session open",
        "task layer uses_session",
        "job",
        "session closed",
        "outer after",
    ]
    assert LOG[sync_key][3] == "job sync" and LOG[sync_key][-1] == "outer after"


async def test_middleware_can_skip_a_job_and_one_that_raises_loses_no_outcome(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    skip_key, before_key, after_key = new_key(), new_key(), new_key()

    async def policy(attempt: AttemptInfo, call_next: CallNext) -> Any:
        key = attempt.args[0]
        if key == skip_key:
            return "skipped by middleware"
        if key == before_key:
            raise LookupError("could not open a session")
        value = await call_next()
        if key == after_key:
            raise RuntimeError("the error reporter itself is broken")
        return value

    # One slot: a hook that raised and kept its slot would stall the jobs after it.
    async with make_scheduler(middleware=[policy], max_concurrent_jobs=1) as scheduler:
        skipped = await scheduler.schedule(observed_jobs.succeed, args=(skip_key,))
        refused = await scheduler.schedule(observed_jobs.succeed, args=(before_key,))
        raised_after = await scheduler.schedule(observed_jobs.succeed, args=(after_key,))
        skipped_job = await scheduler.wait_for_job(skipped, timeout=15)
        refused_job = await scheduler.wait_for_job(refused, timeout=15)
        after_job = await scheduler.wait_for_job(raised_after, timeout=15)
    assert (skipped_job.status, skipped_job.result) == (
        JobStatus.SUCCEEDED,
        "skipped by middleware",
    )
    assert skip_key not in LOG  # the job never ran
    assert refused_job.status is JobStatus.FAILED
    assert "could not open a session" in (refused_job.last_error or "")
    assert before_key not in LOG
    assert (after_job.status, after_job.result) == (JobStatus.SUCCEEDED, "ok")
    assert LOG[after_key] == ["job"]


async def test_events_tell_every_outcome_and_a_raising_handler_changes_nothing(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    events: list[JobEvent] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError("a callback that always fails")

    def kinds(job_id: str) -> list[EventKind]:
        return [event.kind for event in events if event.job_id == job_id]

    key = new_key()
    async with make_scheduler(
        event_handlers=[broken, events.append], max_concurrent_jobs=1
    ) as scheduler:
        succeeded = await scheduler.schedule(observed_jobs.succeed, args=(key,))
        failed = await scheduler.schedule(observed_jobs.fail, args=(key,))
        retried = await scheduler.schedule(observed_jobs.fail_first, args=(key,), max_retries=1)
        snoozed = await scheduler.schedule(observed_jobs.snooze_once, args=(key,))
        for job_id in (succeeded, failed, retried, snoozed):
            await scheduler.wait_for_job(job_id, timeout=15)
        running = await scheduler.schedule(observed_jobs.wait_for_cancel, args=(key,))

        async def started() -> bool:
            return EventKind.STARTED in kinds(running)

        await wait_until(started, message="the cancellable job to start")
        assert await scheduler.cancel_job(running)
        pending = await scheduler.schedule(observed_jobs.succeed, args=(key,), delay=3600)
        assert await scheduler.cancel_job(pending)
        schedule_id = await scheduler.add_schedule(
            observed_jobs.succeed,
            DateTrigger(datetime.now(timezone.utc) + timedelta(milliseconds=200)),
            args=(key,),
        )

        async def fired_and_ran() -> list[JobEvent]:
            fired = [e for e in events if e.kind is EventKind.SCHEDULE_FIRED]
            return fired if fired and EventKind.SUCCEEDED in kinds(fired[0].job_id) else []

        [fire] = await wait_until(fired_and_ran, message="the schedule to fire and its job to run")

        async def all_ended() -> bool:
            return kinds(running)[-1:] == [EventKind.CANCELLED]

        await wait_until(all_ended, message="the cancelled attempt's event")

    assert kinds(succeeded) == [EventKind.SCHEDULED, EventKind.STARTED, EventKind.SUCCEEDED]
    assert kinds(failed) == [EventKind.SCHEDULED, EventKind.STARTED, EventKind.FAILED]
    assert kinds(retried) == [
        EventKind.SCHEDULED,
        EventKind.STARTED,
        EventKind.RETRIED,
        EventKind.STARTED,
        EventKind.SUCCEEDED,
    ]
    assert kinds(snoozed) == [
        EventKind.SCHEDULED,
        EventKind.STARTED,
        EventKind.SNOOZED,
        EventKind.STARTED,
        EventKind.SUCCEEDED,
    ]
    assert kinds(running) == [EventKind.SCHEDULED, EventKind.STARTED, EventKind.CANCELLED]
    assert kinds(pending) == [EventKind.SCHEDULED, EventKind.CANCELLED]
    assert fire.schedule_id == schedule_id and fire.fire_time is not None

    [failure] = [e for e in events if e.job_id == failed and e.kind is EventKind.FAILED]
    assert "failing on purpose" in (failure.error or "")
    [success] = [e for e in events if e.job_id == succeeded and e.kind is EventKind.SUCCEEDED]
    assert success.task_name == "tests.support.observed_jobs:succeed"
    assert (success.queue, success.attempt) == ("default", 1)
    assert success.run_time is not None and success.run_time >= 0
    assert success.start_lag is not None and success.start_lag >= 0


async def test_jobs_claimed_under_flow_control_carry_their_queue_and_lag(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    events: list[JobEvent] = []
    key = new_key()
    async with make_scheduler(event_handlers=[events.append], queues=["limited"]) as scheduler:
        # A limited queue is claimed through claim_flow_jobs(), not the plain claim.
        await scheduler.set_queue_limits("limited", concurrency_limit=5)
        job_id = await scheduler.schedule(observed_jobs.succeed, args=(key,), queue="limited")
        await scheduler.wait_for_job(job_id, timeout=15)

        async def ended() -> list[JobEvent]:
            return [e for e in events if e.job_id == job_id and e.kind is EventKind.SUCCEEDED]

        [success] = await wait_until(ended, message="the success event")
    assert success.queue == "limited"
    assert success.start_lag is not None and success.start_lag >= 0


async def test_a_lost_lease_and_a_release_at_shutdown_have_their_events(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    events: list[JobEvent] = []
    key = new_key()
    scheduler = make_scheduler(event_handlers=[events.append], heartbeat_interval=0.2)
    await scheduler.start()
    job_id = await scheduler.schedule(observed_jobs.wait_for_cancel, args=(key,))

    def kinds() -> list[EventKind]:
        return [event.kind for event in events if event.job_id == job_id]

    async def started(times: int) -> bool:
        return kinds().count(EventKind.STARTED) == times

    await wait_until(lambda: started(1), message="the first attempt to start")
    await pool.execute(
        f"UPDATE {quote_identifier(migrated)}.workers"
        " SET lease_expires_at = now() - interval '1 second' WHERE worker_id = $1",
        scheduler.worker_id,
    )
    # The heartbeat learns the lease is gone; the sweep hands the job back; it runs again.
    await wait_until(lambda: started(2), timeout=20, message="the job to run again")
    await scheduler.shutdown(grace=0.1)
    assert kinds() == [
        EventKind.SCHEDULED,
        EventKind.STARTED,
        EventKind.LEASE_LOST,
        EventKind.STARTED,
        EventKind.RELEASED,
    ]
    attempts = [e.attempt for e in events if e.job_id == job_id and e.ends_attempt]
    assert attempts == [1, 2]


async def test_a_job_the_flow_claim_takes_after_its_statement_began_keeps_its_queue(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """claim_flow_jobs() waits for a lock, then reads with a newer snapshot than the
    statement around it: a job committed in between is claimed, and its queue and trace
    context are read afterwards."""
    events: list[JobEvent] = []
    key = new_key()
    lock = f"scheduler.flow:{quote_identifier(migrated)}"
    async with make_scheduler(event_handlers=[events.append], queues=["limited"]) as scheduler:
        await scheduler.set_queue_limits("limited", concurrency_limit=5)
        async with pool.acquire() as holder:
            holder_pid = holder.get_server_pid()
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)

            async def claim_waits() -> bool:
                waiting: int = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    holder_pid,
                )
                return waiting > 0

            await wait_until(claim_waits, message="a flow claim to wait for the lock")
            # Due in the past: the waiting claim takes it, though it began before it existed.
            job_id = await scheduler.schedule(
                observed_jobs.succeed,
                datetime.now(timezone.utc) - timedelta(minutes=1),
                args=(key,),
                queue="limited",
            )
            await transaction.commit()
        await scheduler.wait_for_job(job_id, timeout=15)

        async def ended() -> list[JobEvent]:
            return [e for e in events if e.job_id == job_id and e.kind is EventKind.SUCCEEDED]

        [success] = await wait_until(ended, message="the success event")
    assert success.queue == "limited"
