"""Recurring schedules on the real database: storage, validation, conflicts, firing."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import asyncpg
import pytest

from scheduler import (
    CoalescePolicy,
    ConflictResolution,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    InvalidJobError,
    InvalidScheduleError,
    InvalidTriggerError,
    JobPriority,
    JobStatus,
    ScheduleAlreadyExistsError,
    Scheduler,
    TaskNotNameableError,
)
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.recurring import slot_job_id
from scheduler.services.ticker import Ticker
from scheduler.triggers import UnreadableTrigger
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import slot_jobs, wait_until


async def schedule_count(pool: asyncpg.Pool, schema: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(schema)}.schedules"))


async def test_a_schedule_is_stored_with_its_settings_and_first_fire_time(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    trigger = CronTrigger("30 1 * * *", timezone="America/New_York")
    schedule_id = await scheduler.add_schedule(
        jobs.record,
        trigger,
        schedule_id="nightly",
        args=("k",),
        kwargs={"value": 1},
        priority=JobPriority.HIGH,
        max_retries=2,
        timeout=30,
        coalesce=CoalescePolicy.ALL,
        misfire_grace_time=timedelta(minutes=10),
        max_running=None,
        jitter=5,
    )
    assert schedule_id == "nightly"
    schedule = await scheduler.get_schedule("nightly")
    assert schedule is not None
    now: datetime = await pool.fetchval("SELECT now()")
    assert schedule.trigger.to_json() == trigger.to_json()
    assert (schedule.task_name, schedule.args, schedule.kwargs) == (
        "tests.support.jobs:record",
        ("k",),
        {"value": 1},
    )
    assert (schedule.priority, schedule.max_retries, schedule.timeout) == (JobPriority.HIGH, 2, 30)
    assert (schedule.coalesce, schedule.misfire_grace_time, schedule.max_running) == (
        CoalescePolicy.ALL,
        600,
        None,
    )
    assert (schedule.jitter, schedule.paused, schedule.last_fire_time) == (5, False, None)
    assert schedule.next_fire_time == trigger.next_fire_time(now)
    assert [s.schedule_id for s in await scheduler.list_schedules()] == ["nightly"]
    assert await scheduler.add_schedule(jobs.record, trigger, args=("x",)) != "nightly"  # a UUID


PAST = DateTrigger(datetime(2001, 1, 1, tzinfo=timezone.utc))
SECONDLY = IntervalTrigger(seconds=1)


# One bad schedule of each kind, refused with the database there: nothing is written. A
# trigger that never fires is judged by the database's clock, so only this tier sees it;
# every other refused schedule and its message: tests/unit/test_recurring_input.py.
@pytest.mark.parametrize(
    ("func", "trigger", "options", "error", "fragment"),
    [
        (jobs.record, PAST, {}, InvalidTriggerError, "never fire"),
        ("tasks:run\n", SECONDLY, {}, TaskNotNameableError, "tasks:run"),
        (jobs.record, SECONDLY, {"max_running": 0}, InvalidScheduleError, "max_running"),
        (jobs.record, SECONDLY, {"args": ("\x00",)}, InvalidJobError, "NUL"),
    ],
)
async def test_a_bad_schedule_of_each_kind_writes_nothing(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    func: Any,
    trigger: Any,
    options: dict[str, Any],
    error: type,
    fragment: str,
) -> None:
    with pytest.raises(error, match=fragment):
        await make_scheduler().add_schedule(func, trigger, **options)
    assert await schedule_count(pool, migrated) == 0


async def test_conflict_policies_on_an_existing_schedule_id(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    hourly, daily = CronTrigger("0 * * * *"), CronTrigger("0 0 * * *")
    await scheduler.add_schedule(jobs.record, hourly, schedule_id="s", args=("a",))
    with pytest.raises(ScheduleAlreadyExistsError, match="IGNORE") as raised:
        await scheduler.add_schedule(jobs.record, daily, schedule_id="s")
    assert raised.value.schedule_id == "s"
    ignored = ConflictResolution.IGNORE
    assert (
        await scheduler.add_schedule(
            jobs.record, daily, schedule_id="s", conflict_resolution=ignored
        )
        == "s"
    )
    kept = await scheduler.get_schedule("s")
    assert kept is not None and kept.args == ("a",) and kept.trigger.to_json() == hourly.to_json()

    # REPLACE overwrites the definition, keeps the pause, and keeps the next fire time
    # unless the trigger changed.
    await scheduler.pause_schedule("s")
    replace = ConflictResolution.REPLACE
    await scheduler.add_schedule(
        jobs.record, hourly, schedule_id="s", args=("b",), conflict_resolution=replace
    )
    same_trigger = await scheduler.get_schedule("s")
    assert same_trigger is not None
    assert (same_trigger.args, same_trigger.paused) == (("b",), True)
    assert same_trigger.next_fire_time == kept.next_fire_time
    await scheduler.add_schedule(
        jobs.record, daily, schedule_id="s", args=("b",), conflict_resolution=replace
    )
    new_trigger = await scheduler.get_schedule("s")
    assert new_trigger is not None and new_trigger.paused
    assert new_trigger.next_fire_time == daily.next_fire_time(await pool.fetchval("SELECT now()"))
    assert await schedule_count(pool, migrated) == 1


@pytest.mark.parametrize("policy", list(ConflictResolution))
async def test_concurrent_adds_of_one_schedule_id_leave_one_schedule(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, policy: ConflictResolution
) -> None:
    schedulers = [make_scheduler() for _ in range(8)]
    results = await asyncio.gather(
        *(
            s.add_schedule(
                jobs.record,
                IntervalTrigger(minutes=1),
                schedule_id="shared",
                args=(str(n),),
                conflict_resolution=policy,
            )
            for n, s in enumerate(schedulers)
        ),
        return_exceptions=True,
    )
    raised = [r for r in results if isinstance(r, BaseException)]
    if policy is ConflictResolution.RAISE:
        assert len(raised) == 7 and all(isinstance(r, ScheduleAlreadyExistsError) for r in raised)
    else:
        assert raised == []
    assert await schedule_count(pool, migrated) == 1


async def test_due_slots_become_ordinary_jobs_once_each(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[jobs.record])
    every_second = IntervalTrigger(seconds=1)
    await scheduler.add_schedule(jobs.record, every_second, schedule_id="tick", args=("tick",))
    async with scheduler:
        await wait_until(
            lambda: _at_least(pool, migrated, "tick", JobStatus.SUCCEEDED, 3),
            message="three slots to run",
        )
    rows = await slot_jobs(pool, migrated, "tick")
    fire_times = [r["fire_time"] for r in rows]
    # Consecutive slots of the trigger, each one job with a deterministic id.
    for earlier, later in itertools.pairwise(fire_times):
        assert every_second.next_fire_time(earlier) == later
    assert [r["job_id"] for r in rows] == [slot_job_id("tick", f) for f in fire_times]
    job = await scheduler.get_job(rows[0]["job_id"])
    assert job is not None
    assert (job.schedule_id, job.fire_time, job.args) == ("tick", fire_times[0], ("tick",))
    schedule = await scheduler.get_schedule("tick")
    assert schedule is not None and schedule.last_fire_time is not None
    assert schedule.last_fire_time >= fire_times[-1]


async def test_on_default_intervals_what_is_due_at_start_runs_at_once(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """The library's own intervals (a 30 s poll): the ticker and the dispatcher look at the
    database as they start, so neither a slot due while no replica ran, nor a schedule
    declared in code, nor a pending job waits for a poll."""
    producer = Scheduler(pool, schema=migrated)
    await producer.add_schedule(
        jobs.record, IntervalTrigger(hours=1), schedule_id="overdue", args=("overdue",)
    )
    await _rewind(pool, migrated, "overdue", to=await pool.fetchval("SELECT now()"))
    await producer.schedule(jobs.record, args=("pending",))
    replica = Scheduler(pool, schema=migrated, tasks=[jobs.record])
    replica.every(seconds=1, schedule_id="declared", args=("declared",))(jobs.record)

    async def all_ran() -> bool:
        return all(jobs.CALLS[key] for key in ("overdue", "pending", "declared"))

    for key in ("overdue", "pending", "declared"):
        jobs.CALLS.pop(key, None)
    async with replica:
        # The declared slot is at most a second away; the rest is due already.
        await wait_until(all_ran, timeout=2.5, message="the first slots and the pending job")


async def _at_least(
    pool: asyncpg.Pool, schema: str, schedule_id: str, status: JobStatus, count: int
) -> bool:
    rows = await slot_jobs(pool, schema, schedule_id)
    return sum(1 for r in rows if r["status"] == status.value) >= count


async def _rewind(pool: asyncpg.Pool, schema: str, schedule_id: str, to: datetime) -> None:
    """As if no replica had run since `to`: the schedule's next fire time is put back."""
    await pool.execute(
        f"UPDATE {quote_identifier(schema)}.schedules SET next_fire_time = $2"
        " WHERE schedule_id = $1",
        schedule_id,
        to,
    )


@pytest.mark.parametrize(
    ("options", "expected_slots"),
    [
        ({}, [2]),
        ({"coalesce": CoalescePolicy.ALL, "max_running": None}, [0, 1, 2]),
        ({"coalesce": CoalescePolicy.ALL}, [2]),  # max_running=1 still applies
        ({"coalesce": CoalescePolicy.SKIP}, []),
        ({"coalesce": CoalescePolicy.ALL, "max_running": None, "misfire_grace_time": 90}, [1, 2]),
        ({"misfire_grace_time": 5}, []),
    ],
)
async def test_a_schedule_that_fell_behind_fires_by_its_policy(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    options: dict[str, Any],
    expected_slots: list[int],
) -> None:
    # Slots every minute from `anchor`; three of them (130 s, 70 s and 10 s ago) are due.
    anchor = await pool.fetchval("SELECT now() - interval '130 seconds'")
    slot = [anchor + timedelta(minutes=k) for k in range(4)]
    scheduler = make_scheduler()
    await scheduler.add_schedule(
        jobs.record,
        IntervalTrigger(minutes=1, start=anchor),
        schedule_id="m",
        args=("m",),
        **options,
    )
    await _rewind(pool, migrated, "m", to=anchor)
    store = PostgresJobStore(pool, migrated)
    assert await Ticker(store, poll_interval=1).run_once() == 1
    fired = [r["fire_time"] for r in await slot_jobs(pool, migrated, "m")]
    assert fired == [slot[k] for k in expected_slots]
    schedule = await scheduler.get_schedule("m")
    assert schedule is not None and schedule.next_fire_time == slot[3]
    # Nothing is left due: a second pass fires nothing more.
    assert await Ticker(store, poll_interval=1).run_once() == 0


async def test_a_slot_that_already_has_a_job_is_not_fired_again(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.add_schedule(
        jobs.record, CronTrigger("* * * * *"), schedule_id="m", args=("m",)
    )
    due = await pool.fetchval("SELECT date_trunc('minute', now())")
    await _rewind(pool, migrated, "m", to=due)
    store = PostgresJobStore(pool, migrated)
    await Ticker(store, poll_interval=1).run_once()
    [first] = await slot_jobs(pool, migrated, "m")
    await _rewind(pool, migrated, "m", to=due)  # as if a stale replica fired it again
    await Ticker(store, poll_interval=1).run_once()
    assert await slot_jobs(pool, migrated, "m") == [first]


async def test_max_running_skips_slots_while_the_previous_run_is_unfinished(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[jobs.wait_forever, jobs.record])
    await scheduler.add_schedule(
        jobs.wait_forever, IntervalTrigger(seconds=1), schedule_id="slow", args=("slow",)
    )
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(seconds=1), schedule_id="clock", args=("clock",)
    )
    async with scheduler:
        await wait_until(
            lambda: _at_least(pool, migrated, "clock", JobStatus.SUCCEEDED, 4), message="four ticks"
        )
        slow = await slot_jobs(pool, migrated, "slow")
        assert len(slow) == 1 and slow[0]["status"] == "running"
        await scheduler.cancel_job(slow[0]["job_id"])
        # Once it ended, the next slot fires again.
        await wait_until(
            lambda: _count_at_least(pool, migrated, "slow", 2), message="a slot after the cancel"
        )


async def test_a_shutdown_in_the_middle_of_a_firing_pass_logs_no_error(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown cancels the services. A ticker cancelled inside its firing transaction left
    the rollback to the pool, which logs `Resetting connection with an active transaction`
    at ERROR. Here a table lock holds the pass in its last statement until shutdown has
    reached the services."""
    q = quote_identifier(migrated)
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(hours=1), schedule_id="hourly", args=("hourly",)
    )
    due: datetime = await pool.fetchval("SELECT now()")
    await _rewind(pool, migrated, "hourly", to=due)

    async def services_cancelled() -> bool:
        runtime = scheduler._runtime
        services = None if runtime is None else runtime.services
        return services is not None and services.cancel_scope.cancel_called

    async with pool.acquire() as blocker:
        holding = blocker.transaction()
        await holding.start()
        # Firing locks the schedule and inserts its job, then waits here to advance it.
        await blocker.execute(f"LOCK TABLE {q}.schedules IN SHARE MODE")
        await scheduler.start()
        await wait_until(
            lambda: _waiting_on_schedules(pool, migrated),
            message="the firing pass to wait on the lock",
        )
        caplog.clear()
        async with anyio.create_task_group() as stopping:
            stopping.start_soon(scheduler.shutdown)
            await wait_until(services_cancelled, message="shutdown to reach the services")
            await holding.rollback()
    await wait_until(lambda: _pool_settled(pool), message="every connection back in the pool")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # The pass in flight was finished, not thrown away.
    assert [r["fire_time"] for r in await slot_jobs(pool, migrated, "hourly")] == [due]


async def test_a_cancelled_resume_rolls_back_and_logs_no_error(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller's timeout cancelling resume_schedule() inside its transaction."""
    scheduler = make_scheduler()
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(hours=1), schedule_id="paused", args=("paused",)
    )
    await scheduler.pause_schedule("paused")
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute(f"SELECT 1 FROM {quote_identifier(migrated)}.schedules FOR UPDATE")
        async with anyio.create_task_group() as resuming:
            resuming.start_soon(scheduler.resume_schedule, "paused")
            await wait_until(
                lambda: _waiting_on_schedules(pool, migrated), message="resume to wait on the lock"
            )
            resuming.cancel_scope.cancel()
    schedule = await scheduler.get_schedule("paused")
    assert schedule is not None and schedule.paused  # nothing was written
    assert await scheduler.resume_schedule("paused")  # and the pool's connections still work
    await wait_until(lambda: _pool_settled(pool), message="every connection back in the pool")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _pool_settled(pool: asyncpg.Pool) -> bool:
    """Whether every connection is back in the pool: a cancelled holder releases its
    connection in the background, and that release is what logs a reset at ERROR."""
    return pool.get_idle_size() == pool.get_size()


async def _waiting_on_schedules(pool: asyncpg.Pool, schema: str) -> bool:
    """Whether a statement waits for a lock on the schedules table or one of its rows."""
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        f"{quote_identifier(schema)}.schedules",
    )
    return bool(waiting)


async def _count_at_least(pool: asyncpg.Pool, schema: str, schedule_id: str, count: int) -> bool:
    return len(await slot_jobs(pool, schema, schedule_id)) >= count


async def test_pause_resume_and_remove(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(seconds=1), schedule_id="p", args=("p",)
    )
    await scheduler.add_schedule(
        jobs.record, IntervalTrigger(seconds=1), schedule_id="clock", args=("clock",)
    )
    async with scheduler:
        await wait_until(lambda: _count_at_least(pool, migrated, "p", 1), message="a first slot")
        assert await scheduler.pause_schedule("p")
        paused_at = len(await slot_jobs(pool, migrated, "p"))
        clock_at = len(await slot_jobs(pool, migrated, "clock"))
        await wait_until(
            lambda: _count_at_least(pool, migrated, "clock", clock_at + 3),
            message="three more ticks",
        )
        assert len(await slot_jobs(pool, migrated, "p")) == paused_at
        schedule = await scheduler.get_schedule("p")
        assert schedule is not None and schedule.paused

        now: datetime = await pool.fetchval("SELECT now()")
        assert await scheduler.resume_schedule("p")
        await wait_until(
            lambda: _count_at_least(pool, migrated, "p", paused_at + 1), message="firing again"
        )
        # Slots that passed while paused were not run.
        after_resume = [r["fire_time"] for r in await slot_jobs(pool, migrated, "p")][paused_at:]
        assert all(f > now for f in after_resume)

        assert await scheduler.remove_schedule("p")
        removed_at = len(await slot_jobs(pool, migrated, "p"))
        clock_at = len(await slot_jobs(pool, migrated, "clock"))
        await wait_until(
            lambda: _count_at_least(pool, migrated, "clock", clock_at + 3),
            message="three more ticks",
        )
        assert len(await slot_jobs(pool, migrated, "p")) == removed_at
        assert await scheduler.get_schedule("p") is None
    for missing in ("p", "nope"):
        assert not await scheduler.pause_schedule(missing)
        assert not await scheduler.resume_schedule(missing)
        assert not await scheduler.remove_schedule(missing)


async def test_declared_schedules_are_written_once_and_follow_code_changes(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    first, second = make_scheduler(), make_scheduler()
    for replica in (first, second):
        replica.cron("*/5 * * * *", timezone="Europe/Berlin", args=("cron",))(jobs.record)
    async with first, second:
        [declared] = await first.list_schedules()
    assert declared.schedule_id == "tests.support.jobs:record"
    assert declared.trigger.to_json() == CronTrigger("*/5 * * * *", "Europe/Berlin").to_json()
    await first.pause_schedule(declared.schedule_id)
    paused = await first.get_schedule(declared.schedule_id)
    assert paused is not None

    # A redeploy with the same declaration changes nothing (the pause stays); a changed
    # declaration updates the definition.
    same = make_scheduler()
    same.cron("*/5 * * * *", timezone="Europe/Berlin", args=("cron",))(jobs.record)
    async with same:
        unchanged = await same.get_schedule(declared.schedule_id)
    assert unchanged is not None and unchanged.paused
    assert unchanged.updated_at == paused.updated_at  # not even rewritten
    changed = make_scheduler()
    changed.every(minutes=10, args=("every",))(jobs.record)
    async with changed:
        updated = await changed.get_schedule(declared.schedule_id)
    assert updated is not None
    assert (updated.args, updated.paused) == (("every",), True)
    assert updated.trigger.to_json() == IntervalTrigger(minutes=10).to_json()
    assert await schedule_count(pool, migrated) == 1


@pytest.mark.parametrize("stored", ["infinity", "20000-01-01 00:00Z", "4000-06-01 00:00Z BC"])
async def test_a_schedule_written_by_sql_is_read_whatever_it_holds(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, stored: str
) -> None:
    # Times past Python's datetime read as its nearest bound; a trigger this code cannot
    # rebuild reads as an UnreadableTrigger that never fires.
    await pool.execute(
        f"INSERT INTO {quote_identifier(migrated)}.schedules"
        " (schedule_id, task_name, args, trigger, paused, next_fire_time, last_fire_time)"
        " VALUES ('odd', 'no.such:task', $1::jsonb, '{\"type\": \"lunar\"}', true,"
        " $2::text::timestamptz, $2::text::timestamptz)",
        "[" + "9" * 5000 + "]",
        stored,
    )
    scheduler = make_scheduler()
    [listed] = await scheduler.list_schedules()
    schedule = await scheduler.get_schedule("odd")
    assert schedule == listed and schedule is not None
    bound = datetime.min if "BC" in stored else datetime.max
    assert schedule.next_fire_time == bound.replace(tzinfo=timezone.utc)
    assert schedule.last_fire_time == schedule.next_fire_time
    assert isinstance(schedule.trigger, UnreadableTrigger)
    assert schedule.trigger.to_json() == {"type": "lunar"}
    assert schedule.trigger.next_fire_time(datetime.now(timezone.utc)) is None
    assert schedule.args == (10**5000 - 1,)


async def test_a_schedule_of_a_callable_registered_under_a_name_uses_that_name(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    scheduler.register(jobs.record, name="reports.nightly")
    nightly = lambda: None  # noqa: E731 - a lambda is the point
    scheduler.register(nightly, name="reports.lambda")
    await scheduler.add_schedule(jobs.record, SECONDLY, schedule_id="a", args=("k",))
    await scheduler.add_schedule(nightly, SECONDLY, schedule_id="b")
    names = {s.schedule_id: s.task_name for s in await scheduler.list_schedules()}
    assert names == {"a": "reports.nightly", "b": "reports.lambda"}
