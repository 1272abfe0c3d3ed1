"""Retry backoff: exponential with jitter, pure and deterministic given a random source."""

from __future__ import annotations

import random
from dataclasses import dataclass


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
        if self.base < 0 or self.maximum < 0:
            raise ValueError("backoff base and maximum must be >= 0 seconds")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        # Cap the exponent so a large attempt count cannot overflow a float.
        raw = min(self.base * self.factor ** min(exponent, 64), self.maximum)
        if not self.jitter or raw == 0:
            return raw
        return (rng or random).uniform(raw / 2, raw)
