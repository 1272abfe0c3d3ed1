"""Recurring schedules refuse bad triggers and options with a typed error before anything
reaches the database (the integration tier checks one of each kind against a real schema
and that nothing was written), and declarations are checked where they are made."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from scheduler import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    InvalidJobError,
    InvalidScheduleError,
    InvalidTriggerError,
    TaskNotNameableError,
)
from tests.support import jobs
from tests.support.unconnected import assert_never_connected, unconnected_scheduler


def _lambda_task() -> Any:
    return lambda: None


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: CronTrigger("61 * * * *"), InvalidTriggerError, "invalid cron"),
        (lambda: CronTrigger("* * * * *", "Mars/Olympus"), InvalidTriggerError, "time zone"),
        (lambda: DateTrigger(datetime(2030, 1, 1)), InvalidTriggerError, "timezone-aware"),
        (lambda: IntervalTrigger(seconds=0), InvalidTriggerError, "positive"),
    ],
)
def test_bad_triggers_are_refused_when_built(call: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        call()


SECONDLY = IntervalTrigger(seconds=1)
BAD_OPTION = InvalidScheduleError


@pytest.mark.parametrize(
    ("func", "trigger", "options", "error", "fragment"),
    [
        (jobs.record, "* * * * *", {}, InvalidTriggerError, "one of scheduler's triggers"),
        (_lambda_task(), SECONDLY, {}, TaskNotNameableError, "lambda"),
        (jobs.record, SECONDLY, {"misfire_grace_time": -1}, BAD_OPTION, "misfire_grace_time"),
        (jobs.record, SECONDLY, {"max_running": 0}, BAD_OPTION, "max_running"),
        (jobs.record, SECONDLY, {"coalesce": "earliest"}, BAD_OPTION, "CoalescePolicy"),
        (jobs.record, SECONDLY, {"jitter": float("nan")}, BAD_OPTION, "jitter"),
        (jobs.record, SECONDLY, {"schedule_id": "x" * 201}, BAD_OPTION, "1 to 200"),
        (jobs.record, SECONDLY, {"args": (object(),)}, InvalidJobError, "JSON"),
        (jobs.record, SECONDLY, {"priority": 7}, InvalidJobError, "priority"),
        (jobs.record, SECONDLY, {"every": 3}, BAD_OPTION, "unknown schedule option"),
        (jobs.record, SECONDLY, {"schedule_id": "a\x00b"}, BAD_OPTION, "NUL"),
        (jobs.record, SECONDLY, {"schedule_id": "\ud800"}, BAD_OPTION, "surrogate"),
        (jobs.record, SECONDLY, {"args": ("\x00",)}, InvalidJobError, "NUL"),
        (jobs.record, SECONDLY, {"kwargs": {"k": 10**5000}}, InvalidJobError, "digits"),
        (jobs.record, SECONDLY, {"max_running": 2**31}, BAD_OPTION, "max_running"),
        (jobs.record, SECONDLY, {"max_running": True}, BAD_OPTION, "max_running"),
        (jobs.record, SECONDLY, {"max_retries": 2**31}, InvalidJobError, "max_retries"),
        (jobs.record, SECONDLY, {"misfire_grace_time": 1e15}, BAD_OPTION, "1000 years"),
        (jobs.record, SECONDLY, {"jitter": timedelta.max}, BAD_OPTION, "1000 years"),
        (jobs.record, SECONDLY, {"timeout": float("inf")}, InvalidJobError, "1000 years"),
    ],
)
async def test_bad_schedules_raise_typed_errors_before_connecting(
    func: Any, trigger: Any, options: dict[str, Any], error: type, fragment: str
) -> None:
    scheduler = unconnected_scheduler()
    with pytest.raises(error, match=fragment):
        await scheduler.add_schedule(func, trigger, **options)
    assert_never_connected(scheduler)


def test_one_function_declared_twice_needs_distinct_ids() -> None:
    scheduler = unconnected_scheduler()
    scheduler.every(minutes=1)(jobs.record)
    with pytest.raises(InvalidScheduleError, match="declared twice"):
        scheduler.every(minutes=2)(jobs.record)
    scheduler.every(minutes=2, schedule_id="second")(jobs.record)
    assert_never_connected(scheduler)


def test_every_accepts_weeks() -> None:
    scheduler = unconnected_scheduler()
    scheduler.every(weeks=1, days=1)(jobs.record)
    [declared] = scheduler._declared.values()
    assert declared.trigger_json == IntervalTrigger(days=8).to_json()
