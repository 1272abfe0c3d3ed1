"""Error text PostgreSQL can always store, cut so that the end survives."""

from __future__ import annotations

import pytest

from scheduler.error_text import MAX_ERROR_LENGTH, storable_text


@pytest.mark.parametrize("length", [MAX_ERROR_LENGTH + 1, MAX_ERROR_LENGTH + 40, 10**6])
def test_a_long_text_fits_the_limit_with_its_last_line_kept(length: int) -> None:
    text = "x" * (length - 30) + "\nValueError: the real reason"
    text = text[-length:] if len(text) > length else text.rjust(length, "y")
    stored = storable_text(text)
    assert len(stored) <= MAX_ERROR_LENGTH
    assert stored.endswith("ValueError: the real reason")
    assert "characters cut" in stored
    # A store that cuts at the limit (end_attempts() does, for SQL callers) keeps it all.
    assert stored[:MAX_ERROR_LENGTH] == stored


def test_a_text_within_the_limit_is_kept_whole() -> None:
    text = "a" * MAX_ERROR_LENGTH
    assert storable_text(text) == text
