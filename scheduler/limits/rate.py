"""Limit kind 'rate' (SQL: functions/limit_rate.sql)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from scheduler.bounds import MAX_SECONDS, MAX_SECONDS_TEXT, MIN_RATE_PERIOD
from scheduler.errors import ConfigurationError
from scheduler.limits.base import Limit, check_count


@dataclass(frozen=True)
class RateLimit(Limit):
    """At most `rate_limit` jobs of the queue or task start per `rate_period` seconds on
    average, `rate_burst` of them at once: a token bucket of `rate_burst` tokens refilled
    at rate_limit / rate_period per second, each start taking one. New settings fill the
    bucket. Bounds: counts from 1 to 2**31 - 1, rate_period from 1 ms to 1000 years."""

    kind: ClassVar[str] = "rate"
    rate_limit: int
    rate_period: float = 1.0
    rate_burst: int = 1

    def __post_init__(self) -> None:
        check_count("rate_limit", self.rate_limit)
        period = self.rate_period
        if (
            isinstance(period, bool)
            or not isinstance(period, (int, float))
            or not math.isfinite(period)
            or not MIN_RATE_PERIOD <= period <= MAX_SECONDS
        ):
            raise ConfigurationError(
                f"rate_period must be seconds from {MIN_RATE_PERIOD} (1 ms) to"
                f" {MAX_SECONDS:.0f} ({MAX_SECONDS_TEXT}), or a timedelta in that range,"
                f" got {self.rate_period!r}"
            )
        object.__setattr__(self, "rate_period", float(period))
        check_count("rate_burst", self.rate_burst)

    def describe(self) -> str:
        return f"rate {self.rate_limit}/{self.rate_period:g}s burst {self.rate_burst}"
