"""Input validation for `schedule()` and `add_schedule()`: each function returns the value
to store or raises a typed error whose message says what to do. Pure: nothing here writes,
so bad input never leaves a partial write behind."""

from __future__ import annotations

import functools
import inspect
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from scheduler.bounds import (
    EARLIEST_TIME,
    INT32_MAX,
    LATEST_TIME,
    MAX_SECONDS,
    MAX_SECONDS_TEXT,
    unstorable_character,
)
from scheduler.errors import (
    InvalidJobError,
    InvalidScheduleError,
    InvalidTriggerError,
    SchedulerError,
)
from scheduler.ids import new_job_id
from scheduler.models import (
    CoalescePolicy,
    ConflictResolution,
    JobPriority,
    JobRequest,
    ScheduleOptions,
)
from scheduler.serialization import encode_arguments
from scheduler.store import NewJob, NewSchedule
from scheduler.task_definition import TaskDefinition
from scheduler.triggers import Trigger, trigger_from_json

JOB_ID_MAX_LENGTH = 255
KEY_MAX_LENGTH = 255
QUEUE_NAME_PATTERN = re.compile(r"[\w.:-]{1,255}", re.ASCII)
DEFAULT_QUEUE = "default"
SCHEDULE_ID_MAX_LENGTH = 200  # a slot's job id is "<schedule_id>@<fire time>"


def new_job(request: JobRequest, task: TaskDefinition, *, max_payload_bytes: int) -> NewJob:
    """Turn a request for `task` into a row to insert, or raise a typed error; writes nothing.

    Options the request leaves out (None) take the task's defaults.
    """
    args_json, kwargs_json = encode_arguments(
        request.args, request.kwargs, max_bytes=max_payload_bytes
    )
    check_arguments_fit(task, request.args, request.kwargs)
    max_retries = task.max_retries if request.max_retries is None else request.max_retries
    timeout = task.timeout if request.timeout is None else request.timeout
    queue = request.queue if request.queue is not None else task.queue
    return NewJob(
        job_id=validate_job_id(request.job_id),
        task_name=task.name,
        args_json=args_json,
        kwargs_json=kwargs_json,
        priority=validate_priority(request.priority),
        execution_time=validate_execution_time(request.execution_time, request.delay),
        delay_seconds=validate_delay(request.delay),
        max_retries=validate_retries(max_retries),
        timeout=validate_timeout(timeout),
        depends_on=validate_depends_on(request.depends_on),
        queue=validate_queue_name(queue),
        lock_key=validate_key(request.lock_key, "lock_key"),
        unique_key=validate_key(request.unique_key, "unique_key"),
    )


def check_arguments_fit(
    task: TaskDefinition, args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> None:
    """Refuse arguments the task's function cannot take (a missing, extra or unknown one)
    now, rather than as a failed attempt later. Known only when this process holds the
    function: scheduled by function, or by the name of a task registered here."""
    if not args and not kwargs and _callable_without_arguments(task.func):
        return  # the common bulk case, decided once per function
    signature = _signature_of(task.func)
    if signature is None:
        return
    try:
        signature.bind(*args, **(kwargs or {}))
    except TypeError as exc:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        raise InvalidJobError(
            f"task {task.name!r} cannot take these arguments: {exc}; it takes"
            f" {getattr(task.func, '__qualname__', task.name)}{bare}"
        ) from None


@functools.lru_cache(maxsize=1024)
def _callable_without_arguments(func: Callable[..., Any]) -> bool:
    """Whether `func` may be called with no arguments (True when it has no signature to
    check, as check_arguments_fit then lets anything through)."""
    signature = _signature_of(func)
    if signature is None:
        return True
    try:
        signature.bind()
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    """Once per function: schedule() of many jobs of one task reads it once."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None


def validate_depends_on(depends_on: object) -> tuple[str, ...]:
    """Job ids to wait for, each once, in the order given."""
    if depends_on is None:
        return ()
    if isinstance(depends_on, str) or not isinstance(depends_on, (list, tuple, set, frozenset)):
        raise InvalidJobError(
            f"depends_on must be a list of job ids, got {type(depends_on).__name__}"
            " (for one dependency write depends_on=[job_id])"
        )
    checked: dict[str, None] = {}
    for job_id in depends_on:
        if not isinstance(job_id, str) or not 1 <= len(job_id) <= JOB_ID_MAX_LENGTH:
            raise InvalidJobError(f"depends_on must hold job ids (str), got {job_id!r}")
        _check_storable(job_id, "depends_on", InvalidJobError)
        checked[job_id] = None
    return tuple(checked)


def validate_queue_name(queue: object, error: type[SchedulerError] = InvalidJobError) -> str:
    """A queue name: 1-255 characters of letters, digits and _ . : -"""
    if not isinstance(queue, str) or not QUEUE_NAME_PATTERN.fullmatch(queue):
        raise error(
            f"queue must be a str of 1 to {KEY_MAX_LENGTH} letters, digits and _ . : -,"
            f" got {queue!r}"
        )
    return queue


def validate_key(key: object, name: str) -> str | None:
    """A lock or unique key: None, or a str of 1-255 characters PostgreSQL can store."""
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX_LENGTH:
        raise InvalidJobError(
            f"{name} must be None or a str of 1 to {KEY_MAX_LENGTH} characters, got {key!r}"
        )
    _check_storable(key, name, InvalidJobError)
    return key


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
    _check_storable(schedule_id, "schedule_id", InvalidScheduleError)
    return schedule_id


def validate_coalesce(value: object) -> str:
    try:
        return CoalescePolicy(value).value
    except ValueError:
        raise InvalidScheduleError(f"coalesce must be a CoalescePolicy, got {value!r}") from None


def validate_max_running(value: object) -> int | None:
    if value is None:
        return None
    return whole_number(value, "max_running", InvalidScheduleError, minimum=1)


def validate_job_id(job_id: str | None) -> str:
    if job_id is None:
        return new_job_id()
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= JOB_ID_MAX_LENGTH:
        raise InvalidJobError(
            f"job_id must be a str of 1 to {JOB_ID_MAX_LENGTH} characters, got {job_id!r}"
        )
    _check_storable(job_id, "job_id", InvalidJobError)
    return job_id


def _check_storable(text: str, name: str, error: type[SchedulerError]) -> None:
    if (problem := unstorable_character(text)) is not None:
        raise error(f"{name} {text!r} contains {problem}, which PostgreSQL cannot store")


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
    if not EARLIEST_TIME <= execution_time <= LATEST_TIME:
        raise InvalidJobError(
            f"execution_time {execution_time} is out of range: it must lie between"
            f" {EARLIEST_TIME:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d} UTC, the dates Python's"
            " datetime can read back in every time zone"
        )
    return execution_time


def validate_delay(delay: float | timedelta | None) -> float | None:
    return validate_seconds(delay, "delay", InvalidJobError, allow_zero=True)


def validate_retries(max_retries: object, error: type[ValueError] = InvalidJobError) -> int:
    return whole_number(max_retries, "max_retries", error, minimum=0)


def whole_number(value: object, name: str, error: type[ValueError], *, minimum: int) -> int:
    """An int that fits a PostgreSQL `integer` column, at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT32_MAX:
        raise error(f"{name} must be an integer from {minimum} to {INT32_MAX}, got {value!r}")
    return int(value)


def validate_timeout(
    timeout: float | timedelta | None, error: type[ValueError] = InvalidJobError
) -> float | None:
    return validate_seconds(timeout, "timeout", error)


def validate_seconds(
    value: float | timedelta | None,
    name: str,
    error: type[ValueError],
    *,
    allow_zero: bool = False,
) -> float | None:
    """A duration in seconds: finite, positive (or zero if allowed), at most 1000 years."""
    if value is None:
        return None
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise error(f"{name} must be seconds or a timedelta, got {value!r}")
    is_nan = isinstance(number, float) and math.isnan(number)
    # Compared as is: math.isfinite() would overflow converting a huge int to float.
    if is_nan or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise error(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    if number > MAX_SECONDS:
        raise error(
            f"{name} must be at most {MAX_SECONDS_TEXT} ({MAX_SECONDS:.0f} s), got {value!r}"
        )
    return float(number)


def new_schedule(
    func: Callable[..., Any] | str,
    trigger: Trigger,
    options: ScheduleOptions,
    validate_job: Callable[[JobRequest], NewJob],
    *,
    default_id_is_task: bool = False,
) -> NewSchedule:
    """Turn add_schedule() / scheduled() input into a schedule row, or raise a typed error;
    writes nothing. `validate_job` validates the job part (the task, arguments, queue) as
    schedule() would; the id defaults to a new UUID, or the task name for a declaration."""
    unknown = set(options) - set(ScheduleOptions.__annotations__)
    if unknown:
        raise InvalidScheduleError(f"unknown schedule option(s): {', '.join(sorted(unknown))}")
    trigger_json = validate_trigger(trigger)
    job = validate_job(
        JobRequest(
            func,
            args=options.get("args", ()),
            kwargs=options.get("kwargs"),
            priority=options.get("priority", JobPriority.NORMAL),
            max_retries=options.get("max_retries"),
            timeout=options.get("timeout"),
            queue=options.get("queue"),
        )
    )
    schedule_id = options.get("schedule_id")
    if schedule_id is None:
        schedule_id = job.task_name if default_id_is_task else str(uuid.uuid4())
    return NewSchedule(
        schedule_id=validate_schedule_id(schedule_id),
        task_name=job.task_name,
        args_json=job.args_json,
        kwargs_json=job.kwargs_json,
        trigger_json=trigger_json,
        priority=job.priority,
        max_retries=job.max_retries,
        timeout=job.timeout,
        coalesce=validate_coalesce(options.get("coalesce", CoalescePolicy.LATEST)),
        misfire_grace_time=validate_seconds(
            options.get("misfire_grace_time"), "misfire_grace_time", InvalidScheduleError
        ),
        max_running=validate_max_running(options.get("max_running", 1)),
        jitter=validate_seconds(
            options.get("jitter"), "jitter", InvalidScheduleError, allow_zero=True
        )
        or 0.0,
        queue=job.queue,
    )
