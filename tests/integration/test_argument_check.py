"""Issue 19.11: arguments a task's function cannot take are refused by `schedule()`, with
a typed error and nothing written, rather than failing the attempt later."""

from __future__ import annotations

import asyncpg
import pytest

from scheduler import CronTrigger, InvalidJobError, JobRequest, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import count_jobs


def greet(name: str) -> str:
    return f"hello {name}"


@pytest.mark.parametrize(
    ("args", "kwargs", "complaint"),
    [
        (("a", "b"), {}, "too many positional arguments"),
        ((), {}, "missing a required argument: 'name'"),
        (("a",), {"nom": "b"}, "unexpected keyword argument 'nom'"),
        (("a",), {"name": "b"}, "multiple values for argument 'name'"),
    ],
)
async def test_arguments_the_function_cannot_take_are_refused_before_anything_is_written(
    migrated: str,
    make_scheduler: SchedulerFactory,
    pool: asyncpg.Pool,
    args: tuple[str, ...],
    kwargs: dict[str, str],
    complaint: str,
) -> None:
    producer: Scheduler = make_scheduler()
    with pytest.raises(InvalidJobError, match=complaint) as raised:
        await producer.schedule(greet, args=args, kwargs=kwargs)
    assert "it takes greet(name)" in str(raised.value)
    with pytest.raises(InvalidJobError, match=complaint):  # none of the batch is written
        await producer.schedule_many(
            [JobRequest(greet, args=("ok",)), JobRequest(greet, args=args, kwargs=kwargs)]
        )
    assert await count_jobs(pool, migrated) == 0


async def test_a_registered_name_is_checked_and_an_unknown_one_is_not(
    migrated: str, make_scheduler: SchedulerFactory, pool: asyncpg.Pool
) -> None:
    producer: Scheduler = make_scheduler()
    producer.register(greet, name="greeter")
    with pytest.raises(InvalidJobError, match="too many positional arguments"):
        await producer.schedule("greeter", args=("a", "b"))
    with pytest.raises(InvalidJobError, match="too many positional arguments"):
        await producer.add_schedule("greeter", CronTrigger("0 3 * * *"), args=("a", "b"))
    # A task only another replica runs: its signature is not known here.
    await producer.schedule("elsewhere:task", args=("a", "b"))
    assert await producer.schedule(greet, args=("a",))
    assert await producer.schedule(jobs.record, args=("k",), kwargs={"value": 1})
    rows = await pool.fetch(f"SELECT task_name FROM {quote_identifier(migrated)}.jobs")
    assert len(rows) == 3
