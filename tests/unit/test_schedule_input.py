"""schedule() refuses every bad value with a typed error that says what is wrong, before
anything reaches the database (the integration tier checks one value of each kind against
a real schema and that nothing was written)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from scheduler import (
    ArgumentsNotSerializableError,
    InvalidJobError,
    PayloadTooLargeError,
    TaskNotNameableError,
)
from tests.support import jobs
from tests.support.unconnected import assert_never_connected, unconnected_scheduler


class NotJson:
    pass


EST = timezone(timedelta(hours=-5))
JST = timezone(timedelta(hours=9))


BAD_INPUTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"execution_time": datetime(2030, 1, 1)}, InvalidJobError, "naive"),
    ({"execution_time": "2030-01-01"}, InvalidJobError, "must be a datetime"),
    ({"execution_time": datetime.now(timezone.utc), "delay": 5}, InvalidJobError, "not both"),
    ({"delay": -1}, InvalidJobError, ">= 0"),
    ({"delay": float("nan")}, InvalidJobError, "finite"),
    ({"args": ({1, 2},)}, ArgumentsNotSerializableError, "set"),
    ({"args": (NotJson(),)}, ArgumentsNotSerializableError, "NotJson"),
    ({"args": (float("nan"),)}, ArgumentsNotSerializableError, "NaN"),
    ({"kwargs": {"x": datetime.now()}}, ArgumentsNotSerializableError, "datetime"),
    ({"args": ("x" * 70_000,)}, PayloadTooLargeError, "cap"),
    ({"max_retries": -1}, InvalidJobError, "max_retries"),
    ({"max_retries": 1.5}, InvalidJobError, "max_retries"),
    ({"priority": 7}, InvalidJobError, "unknown priority"),
    ({"priority": "urgent"}, InvalidJobError, "unknown priority"),
    ({"timeout": 0}, InvalidJobError, "timeout"),
    ({"job_id": ""}, InvalidJobError, "job_id"),
    ({"job_id": "x" * 256}, InvalidJobError, "job_id"),
    ({"job_id": 42}, InvalidJobError, "job_id"),
    ({"conflict_resolution": "overwrite"}, InvalidJobError, "conflict_resolution"),
    # Strings PostgreSQL cannot store (text and jsonb refuse NUL; surrogates are not UTF-8),
    # wherever they hide.
    ({"args": ("a\x00b",)}, ArgumentsNotSerializableError, "NUL"),
    ({"args": ("\ud800",)}, ArgumentsNotSerializableError, "surrogate"),
    ({"args": ("\ud83d\ude00",)}, ArgumentsNotSerializableError, "surrogate"),
    ({"kwargs": {"x": [{"y": "\x00"}]}}, ArgumentsNotSerializableError, "NUL"),
    ({"args": ({"k\x00": 1},)}, ArgumentsNotSerializableError, "NUL"),
    ({"kwargs": {"a\udc00": 1}}, ArgumentsNotSerializableError, "surrogate"),
    ({"job_id": "a\x00b"}, InvalidJobError, "NUL"),
    ({"job_id": "\udfff"}, InvalidJobError, "surrogate"),
    # Numbers that do not fit their column, or that not every replica could decode.
    ({"args": (10**5000,)}, ArgumentsNotSerializableError, "4300 digits"),
    ({"kwargs": {"n": [-(10**4300)]}}, ArgumentsNotSerializableError, "4300 digits"),
    ({"max_retries": 2**31}, InvalidJobError, "max_retries"),
    ({"max_retries": True}, InvalidJobError, "max_retries"),
    ({"timeout": 1e300}, InvalidJobError, "1000 years"),
    ({"timeout": 10**400}, InvalidJobError, "1000 years"),
    # Times PostgreSQL or Python's datetime cannot hold.
    ({"delay": 1e12}, InvalidJobError, "1000 years"),
    ({"delay": 1e13}, InvalidJobError, "1000 years"),
    ({"delay": 1e15}, InvalidJobError, "1000 years"),
    ({"delay": float("inf")}, InvalidJobError, "1000 years"),
    ({"delay": timedelta.max}, InvalidJobError, "1000 years"),
    ({"execution_time": datetime(9999, 12, 31, tzinfo=timezone.utc)}, InvalidJobError, "range"),
    ({"execution_time": datetime.max.replace(tzinfo=EST)}, InvalidJobError, "range"),
    ({"execution_time": datetime.min.replace(tzinfo=timezone.utc)}, InvalidJobError, "range"),
    ({"execution_time": datetime(1, 1, 1, 12, tzinfo=JST)}, InvalidJobError, "range"),
]


@pytest.mark.parametrize(("kwargs", "error", "fragment"), BAD_INPUTS)
async def test_bad_input_raises_a_typed_error_before_connecting(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    scheduler = unconnected_scheduler()
    kwargs.setdefault("args", ("k",))
    with pytest.raises(error, match=fragment):
        await scheduler.schedule(jobs.record, **kwargs)
    assert_never_connected(scheduler)


@pytest.mark.parametrize("name", ["tasks:run\n", "tasks:r\x00un", "tasks:\ud800", "a b", ""])
async def test_unstorable_task_names_are_refused_before_connecting(name: str) -> None:
    scheduler = unconnected_scheduler()
    with pytest.raises(TaskNotNameableError):
        await scheduler.schedule(name)
    assert_never_connected(scheduler)


async def test_unnameable_callables_are_refused_before_connecting() -> None:
    scheduler = unconnected_scheduler()

    async def inner() -> None:
        return None

    for bad in (lambda: None, inner):
        with pytest.raises(TaskNotNameableError):
            await scheduler.schedule(bad)
    assert_never_connected(scheduler)
