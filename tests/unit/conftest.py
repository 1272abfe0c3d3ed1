"""The unit tier runs with no PostgreSQL at all: opening a connection here fails the test
at once, whatever SCHEDULER_TEST_DSN says, so a test that needs the database is found
(and moved to tests/integration) instead of passing only where a server happens to run."""

from __future__ import annotations

from typing import Any, NoReturn

import asyncpg
import asyncpg.connection
import pytest

NEEDS_POSTGRESQL = (
    "a unit test opened a PostgreSQL connection: the unit tier runs without a database;"
    " move this test to tests/integration, or build the scheduler from a DSN it never"
    " opens (tests/support/unconnected.py)"
)


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise AssertionError(NEEDS_POSTGRESQL)


async def _refuse_async(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise AssertionError(NEEDS_POSTGRESQL)


@pytest.fixture(autouse=True)
def no_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncpg.create_pool binds asyncpg.connection.connect when the pool is built.
    monkeypatch.setattr(asyncpg, "connect", _refuse_async)
    monkeypatch.setattr(asyncpg.connection, "connect", _refuse_async)
    try:
        import psycopg
    except ImportError:  # the stack extras are optional
        return
    monkeypatch.setattr(psycopg, "connect", _refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", _refuse)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", _refuse_async)
