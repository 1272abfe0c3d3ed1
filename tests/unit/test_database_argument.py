"""What Scheduler(...) accepts as its database: anything but an asyncpg pool or a DSN
string, and a malformed DSN, are refused when it is built (the DSN's own pool at work:
tests/integration/test_owned_pool.py)."""

from __future__ import annotations

import pytest

from scheduler import ConfigurationError, InvalidDsnError, Scheduler


@pytest.mark.parametrize("bad", [None, 42, b"postgresql://x", object()])
def test_anything_but_a_pool_or_a_dsn_is_refused_saying_what_to_pass(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"asyncpg pool .* or a DSN string"):
        Scheduler(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dsn", ["garbage", "mysql://u@h/db", "postgresql://u@h:port/db"])
def test_a_malformed_dsn_is_refused_when_the_scheduler_is_built(dsn: str) -> None:
    with pytest.raises(InvalidDsnError):
        Scheduler(dsn)
