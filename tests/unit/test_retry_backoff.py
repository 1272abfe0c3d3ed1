from __future__ import annotations

import random
from typing import Any

import pytest

from scheduler import ConfigurationError, RetryBackoff, SchedulerError


def test_exponential_without_jitter_is_capped() -> None:
    backoff = RetryBackoff(base=1, factor=2, maximum=10, jitter=False)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_stays_between_half_and_full_delay() -> None:
    backoff = RetryBackoff(base=4, factor=2, maximum=100, jitter=True)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(500)]
    assert all(8 <= d <= 16 for d in delays)
    assert max(delays) - min(delays) > 4  # it does spread


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryBackoff(maximum=60, jitter=False).delay(10_000) == 60


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"factor": 0.5}, {"maximum": -2}])
def test_invalid_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        RetryBackoff(**kwargs)


@pytest.mark.parametrize(
    "settings",
    [
        {"factor": 0.5},
        {"base": -1},
        {"maximum": -1},
        {"base": float("nan")},
        {"factor": float("inf")},
        {"maximum": float("inf")},
        {"maximum": 1e15},
        {"base": 10**400},
        {"factor": True},
        {"base": "1"},
        {"jitter": "yes"},
    ],
)
def test_bad_backoffs_raise_a_typed_error(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="backoff") as info:
        RetryBackoff(**settings)
    assert isinstance(info.value, SchedulerError) and isinstance(info.value, ValueError)


def test_a_factor_too_large_for_a_float_falls_back_to_the_maximum() -> None:
    backoff = RetryBackoff(base=1, factor=1e10, maximum=60, jitter=False)
    assert backoff.delay(100) == 60
