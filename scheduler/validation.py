"""Input validation for `schedule()` and `add_schedule()`: each function returns the value
to store or raises a typed error whose message says what to do. Pure: nothing here writes,
so bad input never leaves a partial write behind."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

from scheduler.errors import InvalidJobError, InvalidScheduleError, InvalidTriggerError
from scheduler.models import CoalescePolicy, ConflictResolution, JobPriority
from scheduler.triggers import trigger_from_json

JOB_ID_MAX_LENGTH = 255
SCHEDULE_ID_MAX_LENGTH = 200  # a slot's job id is "<schedule_id>@<fire time>"


def validate_conflict_resolution(value: object) -> ConflictResolution:
    try:
        return ConflictResolution(value)
    except ValueError:
        raise InvalidJobError(
            f"conflict_resolution must be a ConflictResolution, got {value!r}"
        ) from None


def validate_trigger(trigger: object) -> dict[str, Any]:
    """The trigger's JSON, checked to rebuild: a schedule is read back by other replicas."""
    to_json = getattr(trigger, "to_json", None)
    if not callable(to_json) or not callable(getattr(trigger, "next_fire_time", None)):
        raise InvalidTriggerError(
            f"trigger must be one of scheduler's triggers (CronTrigger, IntervalTrigger, ...),"
            f" got {trigger!r}"
        )
    data: dict[str, Any] = to_json()
    try:
        trigger_from_json(data)
    except (InvalidTriggerError, KeyError, TypeError, ValueError) as exc:
        raise InvalidTriggerError(
            f"trigger {trigger!r} cannot be stored: only scheduler's trigger classes can ({exc})"
        ) from None
    return data


def validate_schedule_id(schedule_id: object) -> str:
    if not isinstance(schedule_id, str) or not 1 <= len(schedule_id) <= SCHEDULE_ID_MAX_LENGTH:
        raise InvalidScheduleError(
            f"schedule_id must be a str of 1 to {SCHEDULE_ID_MAX_LENGTH} characters,"
            f" got {schedule_id!r}"
        )
    return schedule_id


def validate_coalesce(value: object) -> str:
    try:
        return CoalescePolicy(value).value
    except ValueError:
        raise InvalidScheduleError(f"coalesce must be a CoalescePolicy, got {value!r}") from None


def validate_max_running(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidScheduleError(f"max_running must be an integer >= 1 or None, got {value!r}")
    return value


def validate_job_id(job_id: str | None) -> str:
    if job_id is None:
        return str(uuid.uuid4())
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= JOB_ID_MAX_LENGTH:
        raise InvalidJobError(
            f"job_id must be a str of 1 to {JOB_ID_MAX_LENGTH} characters, got {job_id!r}"
        )
    return job_id


def validate_priority(priority: object) -> int:
    try:
        return JobPriority.coerce(priority).value
    except ValueError as exc:
        raise InvalidJobError(str(exc)) from None


def validate_execution_time(
    execution_time: datetime | None, delay: float | timedelta | None
) -> datetime | None:
    if execution_time is None:
        return None
    if delay is not None:
        raise InvalidJobError("pass either execution_time or delay, not both")
    if not isinstance(execution_time, datetime):
        raise InvalidJobError(
            f"execution_time must be a datetime, got {type(execution_time).__name__}"
        )
    if execution_time.tzinfo is None or execution_time.utcoffset() is None:
        raise InvalidJobError(
            "execution_time is naive; give it a time zone, e.g. datetime.now(timezone.utc)"
            " + timedelta(minutes=5), so every replica reads the same instant"
        )
    return execution_time


def validate_delay(delay: float | timedelta | None) -> float | None:
    return validate_seconds(delay, "delay", InvalidJobError, allow_zero=True)


def validate_retries(max_retries: object) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidJobError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    return max_retries


def validate_timeout(timeout: float | timedelta | None) -> float | None:
    return validate_seconds(timeout, "timeout", InvalidJobError)


def validate_seconds(
    value: float | timedelta | None,
    name: str,
    error: type[ValueError],
    *,
    allow_zero: bool = False,
) -> float | None:
    if value is None:
        return None
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise error(f"{name} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise error(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(number)
