"""What the columns and Python can hold. Input is checked against these bounds before anything
is written, so every value that passes validation can be stored and read back by any replica."""

from __future__ import annotations

import re
from datetime import datetime, timezone

#: The largest value of a PostgreSQL `integer` column (max_retries, max_running, ...).
INT32_MAX = 2**31 - 1

#: Integers in arguments: Python's default int <-> str conversion limit, so every replica
#: can encode and decode them whatever its `sys.set_int_max_str_digits` setting.
MAX_INT_DIGITS = 4300
_INT_LIMIT: int = 10**MAX_INT_DIGITS

#: Any duration (delay, timeout, grace, interval setting): 1000 years keeps `now() + d`
#: well inside both PostgreSQL's and Python's datetime range.
MAX_SECONDS = 1000 * 365.25 * 86400
MAX_SECONDS_TEXT = "1000 years"

#: Execution times must lie in this range: Python's datetime stops at years 1 and 9999,
#: and a day of margin lets every time zone display the instant.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=timezone.utc)

#: Characters PostgreSQL cannot store: NUL (text and jsonb refuse it) and surrogate code
#: points (not encodable as UTF-8; an escaped pair in JSON would silently merge).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_character(text: str) -> str | None:
    """A description of the first character of `text` PostgreSQL cannot store, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"the lone surrogate {char!r}"
    return f"{what} at index {found.start()}"


def int_fits(value: int) -> bool:
    """True when an argument integer has at most `MAX_INT_DIGITS` digits."""
    return -_INT_LIMIT < value < _INT_LIMIT
