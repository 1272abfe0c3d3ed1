"""Issue 19.11: six-field cron puts seconds first here, last in croniter. An expression
only valid seconds-last is refused with the spelling to use; one that reads very
differently the two ways is warned about once; today's seconds-first reading stays."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from scheduler import CronTrigger, InvalidTriggerError


@pytest.mark.parametrize(
    ("croniter_style", "ours"),
    [("0 9 * * 1-5 30", "30 0 9 * * 1-5"), ("* * * * * 45", "45 * * * * *")],
)
def test_an_expression_valid_only_with_seconds_last_is_refused_with_the_fix(
    croniter_style: str, ours: str
) -> None:
    with pytest.raises(InvalidTriggerError, match="seconds first") as raised:
        CronTrigger(croniter_style)
    assert repr(ours) in str(raised.value)
    CronTrigger(ours)  # the suggestion is valid


def test_seconds_first_is_still_how_six_fields_read() -> None:
    start = datetime(2030, 1, 7, 8, 0, tzinfo=timezone.utc)  # a Monday
    fire = CronTrigger("30 0 9 * * 1-5").next_fire_time(start)
    assert fire == datetime(2030, 1, 7, 9, 0, 30, tzinfo=timezone.utc)


def test_an_expression_that_looks_seconds_last_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler.triggers")
    CronTrigger("*/7 * * * * 0")
    CronTrigger("*/7 * * * * 0")
    [warning] = [r.getMessage() for r in caplog.records]
    assert "seconds FIRST" in warning and "'0 */7 * * * *'" in warning


@pytest.mark.parametrize("expression", ["*/10 * * * * *", "0 0 12 * * 0", "*/5 * * * *"])
def test_unambiguous_expressions_do_not_warn(
    expression: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler.triggers")
    CronTrigger(expression)
    assert caplog.records == []
