"""Fleet-wide flow control, the Python side: the records `Scheduler.queue_stats()` and
`Scheduler.task_limits()` return, and `set_queue_limits()`'s limits. The limits live in the
database (table `limits`, a row per kind; their kinds in scheduler/limits/) and the claim
enforces them there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.limits import Limit
from scheduler.limits.concurrency import ConcurrencyLimit
from scheduler.limits.rate import RateLimit


@dataclass(frozen=True)
class Limits:
    """The concurrency and rate limits of a queue or a task (`set_queue_limits()`); None
    means no limit of that kind. Every kind's limits: `QueueStats.all_limits`.

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
    #: migration 0011, or of a kind this release lacks): its jobs wait until the limit is
    #: set again or removed. None: no problem.
    problem: str | None = None
    #: Every limit of the queue, of every kind (`limits` shows two of them).
    all_limits: tuple[Limit, ...] = ()


@dataclass(frozen=True)
class TaskLimits:
    """A task with limits, and how many of its jobs run now (fleet-wide)."""

    task_name: str
    running: int
    limits: Limits
    #: As QueueStats.problem: the task's jobs wait until its limits are fixed.
    problem: str | None = None
    #: Every limit of the task, of every kind.
    all_limits: tuple[Limit, ...] = ()


def validate_limits(
    concurrency_limit: int | None,
    rate_limit: int | None,
    rate_period: float | timedelta,
    rate_burst: int,
) -> Limits:
    """The limits to store, or `ConfigurationError` saying what to pass instead. The rate's
    period and burst are checked even without a rate_limit, so a typo is not stored."""
    if concurrency_limit is not None:
        ConcurrencyLimit(concurrency_limit)
    period = rate_period.total_seconds() if isinstance(rate_period, timedelta) else rate_period
    rate = RateLimit(1 if rate_limit is None else rate_limit, period, rate_burst)
    return Limits(concurrency_limit, rate_limit, rate.rate_period, rate.rate_burst)


def legacy_kinds(limits: Limits) -> tuple[Limit, ...]:
    """`limits` as the limit kinds they set (the rows set_queue_limits() writes)."""
    kinds: list[Limit] = []
    if limits.concurrency_limit is not None:
        kinds.append(ConcurrencyLimit(limits.concurrency_limit))
    if limits.rate_limit is not None:
        kinds.append(RateLimit(limits.rate_limit, limits.rate_period, limits.rate_burst))
    return tuple(kinds)


def legacy_limits(limits: tuple[Limit, ...]) -> Limits:
    """The concurrency and rate limits among `limits`, as `Limits` shows them."""
    concurrency = next((x for x in limits if isinstance(x, ConcurrencyLimit)), None)
    rate = next((x for x in limits if isinstance(x, RateLimit)), None)
    return Limits(
        concurrency_limit=None if concurrency is None else concurrency.concurrency_limit,
        rate_limit=None if rate is None else rate.rate_limit,
        rate_period=1.0 if rate is None else rate.rate_period,
        rate_burst=1 if rate is None else rate.rate_burst,
    )
