"""Recurring schedules added, paused, resumed and removed from SQL (migration 0005): SQL
checks what it can, a replica computes the first fire time or pauses the schedule with the
reason Python could not build its trigger."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from scheduler import CronTrigger, IntervalTrigger, JobStatus
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import holds, slot_jobs, unique_schema, wait_until

RECORD = "tests.support.jobs:record"


async def add(pool: asyncpg.Pool, schema: str, arguments: str, *values: Any) -> Any:
    return await pool.fetchval(
        f"SELECT {quote_identifier(schema)}.add_schedule({arguments})", *values
    )


async def test_a_cron_schedule_added_by_sql_fires_on_a_replica(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(tasks=[jobs.record]) as scheduler:
        schedule_id = await add(
            pool,
            migrated,
            "'every-second', $1, cron => '* * * * * *', timezone => 'Europe/Berlin',"
            " args => $2::jsonb",
            RECORD,
            f'["{key}"]',
        )
        assert schedule_id == "every-second"
        await wait_until(lambda: holds(len(jobs.calls(key)) >= 2), message="two slots run")
        schedule = await scheduler.get_schedule("every-second")
    assert schedule is not None
    assert schedule.trigger.to_json() == CronTrigger("* * * * * *", "Europe/Berlin").to_json()
    assert schedule.error is None and not schedule.paused
    slots = await slot_jobs(pool, migrated, "every-second")
    assert len({row["fire_time"] for row in slots}) == len(slots) >= 2


async def test_an_interval_schedule_added_by_sql_fires(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(tasks=[jobs.record]) as scheduler:
        await add(
            pool,
            migrated,
            "'tick', $1, every => '1 second', args => $2::jsonb",
            RECORD,
            f'["{key}"]',
        )
        await wait_until(lambda: holds(jobs.calls(key)), message="a slot run")
        schedule = await scheduler.get_schedule("tick")
    assert schedule is not None
    assert schedule.trigger.to_json() == IntervalTrigger(seconds=1).to_json()


async def test_an_expression_croniter_refuses_pauses_the_schedule_with_the_reason(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Minute 61 has the right shape for SQL's check; only Python can refuse it."""
    async with make_scheduler() as scheduler:
        await add(pool, migrated, "'broken', $1, cron => '61 * * * *'", RECORD)

        async def paused_with_reason() -> bool:
            schedule = await scheduler.get_schedule("broken")
            return schedule is not None and schedule.paused and schedule.error is not None

        await wait_until(paused_with_reason, message="the schedule paused with its reason")
    row = await pool.fetchrow(
        f"SELECT paused, trigger_error FROM {quote_identifier(migrated)}.schedule_status"
        " WHERE schedule_id = 'broken'"
    )
    assert row is not None and row["paused"] and "cannot build its trigger" in row["trigger_error"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ("'s', $1", "exactly one of cron"),
        ("'s', $1, cron => '* * * * *', every => '1 minute'", "exactly one of cron"),
        ("'s', $1, cron => '* * *'", "5 fields"),
        ("'s', $1, cron => '* * * * * * *'", "5 fields"),
        ("'s', $1, cron => '* * * * *; drop'", "5 fields"),
        ("'s', $1, cron => '* * * * *', timezone => 'Mars/Olympus'", "unknown time zone"),
        ("'s', $1, every => '0 seconds'", "positive interval"),
        ("'s', $1, every => '1 minute', timezone => 'Europe/Berlin'", "timezone applies"),
        ("'', $1, every => '1 minute'", "schedule_id"),
        ("'s', $1, every => '1 minute', priority => 7", "unknown priority"),
        ("'s', $1, every => '1 minute', coalesce_policy => 'some'", "coalesce_policy"),
        ("'s', $1, every => '1 minute', max_running => 0", "max_running"),
        ("'s', $1, every => '1 minute', jitter => '-1 second'", "jitter"),
        ("'s', $1, every => '1 minute', misfire_grace => '0 seconds'", "misfire_grace"),
        ("'s', $1, every => '1 minute', conflict => 'merge'", "conflict"),
        ("'s', 'os.system; --', every => '1 minute'", "task name"),
        ("'s', $1, every => '1 minute', args => '{}'", "args must be a JSON array"),
    ],
)
async def test_bad_schedules_from_sql_raise_and_write_nothing(
    pool: asyncpg.Pool, migrated: str, arguments: str, fragment: str
) -> None:
    values = (RECORD,) if "$1" in arguments else ()
    with pytest.raises(asyncpg.PostgresError, match=fragment) as raised:
        await add(pool, migrated, arguments, *values)
    assert raised.value.sqlstate == "22023"
    q = quote_identifier(migrated)
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.schedules") == 0


async def test_conflict_policies_and_pause_resume_remove_from_sql(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await add(pool, migrated, "'daily', $1, cron => '0 3 * * *'", RECORD)
    with pytest.raises(asyncpg.UniqueViolationError, match="already exists"):
        await add(pool, migrated, "'daily', $1, cron => '0 4 * * *'", RECORD)
    assert (
        await add(pool, migrated, "'daily', $1, cron => '0 4 * * *', conflict => 'ignore'", RECORD)
        == "daily"
    )
    trigger = await pool.fetchval(f"SELECT trigger ->> 'expression' FROM {q}.schedules")
    assert trigger == "0 3 * * *"
    await add(pool, migrated, "'daily', $1, cron => '0 5 * * *', conflict => 'replace'", RECORD)
    row = await pool.fetchrow(
        f"SELECT trigger ->> 'expression' AS e, needs_first_fire FROM {q}.schedules"
    )
    assert row is not None and (row["e"], row["needs_first_fire"]) == ("0 5 * * *", True)

    assert await pool.fetchval(f"SELECT {q}.pause_schedule('daily')") is True
    assert await pool.fetchval(f"SELECT paused FROM {q}.schedules") is True
    assert await pool.fetchval(f"SELECT {q}.resume_schedule('daily')") is True
    assert await pool.fetchval(f"SELECT paused FROM {q}.schedules") is False
    assert await pool.fetchval(f"SELECT {q}.remove_schedule('daily')") is True
    for call in ("pause_schedule", "resume_schedule", "remove_schedule"):
        assert await pool.fetchval(f"SELECT {q}.{call}('daily')") is False


async def test_a_schedule_added_while_no_replica_runs_is_planned_at_start(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A schedule added by SQL while no replica runs is planned when one starts."""
    key = unique_schema("k")
    await add(
        pool, migrated, "'later', $1, every => '1 second', args => $2::jsonb", RECORD, f'["{key}"]'
    )
    async with make_scheduler(tasks=[jobs.record]) as scheduler:
        await wait_until(lambda: holds(jobs.calls(key)), message="a slot run")
        [first, *_] = await slot_jobs(pool, migrated, "later")
        job = await scheduler.get_job(first["job_id"])
        assert job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.RUNNING)
