"""Transactional enqueue from the caller's stack: what the producers refuse up front,
before any connection is used (the transactions themselves:
tests/integration/test_stacks_sync.py and test_stacks_async.py). Needs the stack extras
(psycopg, SQLAlchemy), as those integration tests do."""

from __future__ import annotations

import pytest

from scheduler import ConfigurationError, Scheduler, SyncProducer
from tests.support import jobs
from tests.support.unconnected import assert_never_connected, unconnected_scheduler


def test_what_a_sync_producer_refuses_up_front() -> None:
    with pytest.raises(ConfigurationError, match="schema name"):
        SyncProducer(schema="Bad-Name")
    with pytest.raises(
        ConfigurationError, match="pass a psycopg 3 Connection, a SQLAlchemy Session"
    ):
        SyncProducer(schema="s").schedule(object(), "some:task")


async def test_something_else_as_connection_is_refused_with_what_to_pass() -> None:
    producer: Scheduler = unconnected_scheduler()
    with pytest.raises(ConfigurationError, match="SQLAlchemy AsyncSession"):
        await producer.schedule(jobs.record, connection=object())
    assert_never_connected(producer)
