"""Retry backoff: exponential with jitter, pure and deterministic given a random source."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from scheduler.bounds import MAX_SECONDS, MAX_SECONDS_TEXT
from scheduler.errors import ConfigurationError


@dataclass(frozen=True)
class RetryBackoff:
    """Delay before attempt n+1 after attempt n failed.

    The un-jittered delay is ``base * factor ** (attempt - 1)`` capped at ``maximum``;
    with ``jitter`` the actual delay is uniform in [delay/2, delay] ("equal jitter"), so
    retries of jobs that failed together spread out but never come back sooner than half.
    """

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base", "factor", "maximum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"backoff {name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigurationError(f"backoff {name} must be finite, got {value!r}")
        if not 0 <= self.base <= MAX_SECONDS or not 0 <= self.maximum <= MAX_SECONDS:
            raise ConfigurationError(
                f"backoff base and maximum must be from 0 seconds to {MAX_SECONDS_TEXT},"
                f" got base={self.base!r}, maximum={self.maximum!r}"
            )
        if self.factor < 1:
            raise ConfigurationError(
                f"backoff factor must be >= 1 (delays never shrink), got {self.factor!r}"
            )
        if not isinstance(self.jitter, bool):
            raise ConfigurationError(f"backoff jitter must be True or False, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        # Cap the exponent so a large attempt count cannot overflow a float; a large
        # factor still can, and then the cap applies.
        try:
            raw = min(self.base * self.factor ** min(exponent, 64), self.maximum)
        except OverflowError:
            raw = self.maximum
        if not self.jitter or raw == 0:
            return raw
        return (rng or random).uniform(raw / 2, raw)
