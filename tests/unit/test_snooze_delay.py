"""Snooze(): the delay it accepts (snoozing jobs run in tests/integration/test_snooze.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler import Snooze


def test_a_snooze_delay_must_be_a_duration() -> None:
    assert Snooze(timedelta(minutes=2)).delay == 120.0
    for bad in (-1, float("nan"), "soon"):
        with pytest.raises(ValueError, match="Snooze delay"):
            Snooze(bad)  # type: ignore[arg-type]
