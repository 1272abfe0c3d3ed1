"""Fleet-wide flow control, the Python side: the records `Scheduler.queue_stats()` and
`Scheduler.task_limits()` return and the checks of the limits one sets. The limits live in
the database (tables `queues` and `task_limits`) and the claim enforces them there."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from scheduler.bounds import INT32_MAX, MAX_SECONDS, MAX_SECONDS_TEXT, MIN_RATE_PERIOD
from scheduler.errors import ConfigurationError


@dataclass(frozen=True)
class Limits:
    """Fleet-wide limits of a queue or a task; None means no limit of that kind.

    concurrency_limit  at most this many run at once (1: serialized dispatch).
    rate_limit         at most this many start per `rate_period` seconds on average, and
                       `rate_burst` of them at once (a token bucket of `rate_burst` tokens
                       refilled at rate_limit / rate_period per second).

    Bounds (scheduler.bounds.BOUNDS): counts from 1 to 2**31 - 1, rate_period from 1 ms
    to 1000 years.
    """

    concurrency_limit: int | None = None
    rate_limit: int | None = None
    rate_period: float = 1.0
    rate_burst: int = 1


@dataclass(frozen=True)
class QueueStats:
    """One queue as `Scheduler.queue_stats()` and `scheduler queues` show it."""

    queue: str
    due_now: int  # pending and due: the backlog
    future: int  # pending, due later
    running: int  # running rows, orphaned attempts not yet reaped included
    paused: bool
    limits: Limits
    #: Why its limits cannot be enforced (a row out of bounds, written by hand or before
    #: migration 0011): its jobs wait until set_queue_limits() fixes it. None: no problem.
    problem: str | None = None


@dataclass(frozen=True)
class TaskLimits:
    """A task with limits, and how many of its jobs run now (fleet-wide)."""

    task_name: str
    running: int
    limits: Limits
    #: As QueueStats.problem: the task's jobs wait until set_task_limits() fixes it.
    problem: str | None = None


def validate_limits(
    concurrency_limit: int | None,
    rate_limit: int | None,
    rate_period: float | timedelta,
    rate_burst: int,
) -> Limits:
    """The limits to store, or `ConfigurationError` saying what to pass instead."""
    _optional_count("concurrency_limit", concurrency_limit, "to stop a queue, pause it")
    _optional_count("rate_limit", rate_limit, "")
    period = rate_period.total_seconds() if isinstance(rate_period, timedelta) else rate_period
    if (
        isinstance(period, bool)
        or not isinstance(period, (int, float))
        or not math.isfinite(period)
        or not MIN_RATE_PERIOD <= period <= MAX_SECONDS
    ):
        raise ConfigurationError(
            f"rate_period must be seconds from {MIN_RATE_PERIOD} (1 ms) to {MAX_SECONDS:.0f}"
            f" ({MAX_SECONDS_TEXT}), or a timedelta in that range, got {rate_period!r}"
        )
    if (
        isinstance(rate_burst, bool)
        or not isinstance(rate_burst, int)
        or not 1 <= rate_burst <= INT32_MAX
    ):
        raise ConfigurationError(
            f"rate_burst must be an integer from 1 to {INT32_MAX}, got {rate_burst!r}"
        )
    return Limits(concurrency_limit, rate_limit, float(period), rate_burst)


def _optional_count(name: str, value: object, hint: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT32_MAX:
        extra = f"; {hint}" if hint else ""
        raise ConfigurationError(
            f"{name} must be None (no limit) or an integer from 1 to {INT32_MAX},"
            f" got {value!r}{extra}"
        )
