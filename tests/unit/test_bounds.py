"""Issue 19, item 2: the bounds of every numeric setting, in Python. The database side
(CHECKs, 22023 from the SQL functions, the claim's defence) is tests/integration/
test_bounds.py; this file also pins that both sides use the same numbers."""

from __future__ import annotations

import math
from datetime import timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import ConfigurationError, IntervalTrigger, InvalidTriggerError, SchedulerError
from scheduler.bounds import (
    BOUNDS,
    INT32_MAX,
    MAX_PAYLOAD_BYTES,
    MAX_SECONDS,
    MAX_SLOTS,
    MIN_RATE_PERIOD,
)
from scheduler.config import SchedulerConfig
from scheduler.flow import validate_limits

MIGRATION = "0011_bounds_and_roles.sql"


def migration_text() -> str:
    return resources.files("scheduler.postgres.migrations").joinpath(MIGRATION).read_text("utf-8")


def function_text(name: str) -> str:
    """A function's one home (functions/<name>.sql): where its bounds are checked."""
    folder = resources.files("scheduler.postgres").joinpath("functions")
    return folder.joinpath(f"{name}.sql").read_text("utf-8")


def test_the_sql_bounds_are_the_python_bounds() -> None:
    text = migration_text()  # the CHECKs
    assert MAX_SECONDS == 31557600000
    assert f"{MAX_SECONDS:.0f}" in text
    assert f"{MIN_RATE_PERIOD}" in text
    assert f"BETWEEN 1 AND {MAX_PAYLOAD_BYTES}" in text
    # What the claims and set_limit() refuse.
    assert str(INT32_MAX) in function_text("limit_count_problem")
    rate = function_text("limit_rate")
    assert f"{MIN_RATE_PERIOD}" in rate and f"{MAX_SECONDS:.0f}" in rate
    assert f"{MAX_SECONDS:.0f}" in function_text("add_schedule")


def test_the_bounds_table_is_well_formed() -> None:
    assert BOUNDS
    for bound in BOUNDS:
        assert bound.minimum <= bound.maximum, bound
        assert bound.name and bound.where, bound


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=0, max_value=0.01),
        st.floats(min_value=MAX_SECONDS - 1, max_value=MAX_SECONDS + 1),
    )
)
def test_a_rate_period_is_accepted_exactly_within_its_bounds(period: float) -> None:
    inside = MIN_RATE_PERIOD <= period <= MAX_SECONDS  # False for NaN
    if inside:
        limits = validate_limits(None, 5, period, 1)
        assert limits.rate_period == period
        # The largest refill a claim computes stays far from float overflow.
        assert 300_000 * 365.25 * 86400 * INT32_MAX / limits.rate_period < 1e300
    else:
        with pytest.raises(ConfigurationError, match=r"from 0\.001 \(1 ms\)"):
            validate_limits(None, 5, period, 1)


@given(st.integers())
def test_counts_of_limits_are_accepted_exactly_within_their_bounds(value: int) -> None:
    inside = 1 <= value <= INT32_MAX
    arguments: list[tuple[int | None, int | None, int]] = [
        (value, None, 1),  # concurrency_limit
        (None, value, 1),  # rate_limit
        (None, 1, value),  # rate_burst
    ]
    for concurrency, rate, burst in arguments:
        if inside:
            validate_limits(concurrency, rate, 1.0, burst)
        else:
            with pytest.raises(ConfigurationError, match=str(INT32_MAX)):
                validate_limits(concurrency, rate, 1.0, burst)


def test_a_timedelta_rate_period_has_the_same_bounds() -> None:
    assert validate_limits(None, 1, timedelta(milliseconds=1), 1).rate_period == 0.001
    with pytest.raises(ConfigurationError):
        validate_limits(None, 1, timedelta(microseconds=999), 1)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_concurrent_jobs", MAX_SLOTS + 1),
        ("prefetch", MAX_SLOTS + 1),
        ("max_payload_bytes", MAX_PAYLOAD_BYTES + 1),
        ("max_result_bytes", MAX_PAYLOAD_BYTES + 1),
        ("claim_batch_size", INT32_MAX + 1),
        ("lease_time", math.inf),
        ("lease_time", MAX_SECONDS * 2),
        ("retention", -1.0),
        ("orphan_retries", INT32_MAX + 1),
    ],
)
def test_scheduler_settings_out_of_bounds_are_refused(setting: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SchedulerConfig(**{setting: value})
    assert isinstance(info.value, SchedulerError)
    assert setting in str(info.value)


def test_scheduler_settings_at_their_bounds_are_accepted() -> None:
    config = SchedulerConfig(
        max_concurrent_jobs=MAX_SLOTS,
        prefetch=MAX_SLOTS,
        max_payload_bytes=MAX_PAYLOAD_BYTES,
        max_result_bytes=MAX_PAYLOAD_BYTES,
    )
    # The prefetch arithmetic on them stays finite.
    assert math.isfinite(config.max_concurrent_jobs * 0.1 / 1e-9 + config.prefetch)


def test_an_interval_trigger_is_at_most_1000_years() -> None:
    IntervalTrigger(seconds=MAX_SECONDS)
    with pytest.raises(InvalidTriggerError, match="at most 1000 years"):
        IntervalTrigger(seconds=MAX_SECONDS + 1)
    with pytest.raises(InvalidTriggerError, match="at most 1000 years"):
        IntervalTrigger(weeks=10**8)
