"""KeptConnections: the per-job statements reuse a connection from the application's pool
(no reset round trip between them) and give it back once idle, or at shutdown."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from scheduler.postgres.connection import KeptConnections
from tests.support.db import TEST_DSN, holds, wait_until


async def test_statements_reuse_one_connection_and_hand_it_back_when_idle() -> None:
    small = await asyncpg.create_pool(TEST_DSN, min_size=2, max_size=2)
    assert small is not None
    try:
        kept = KeptConnections(small, keep=2, idle=0.2)
        # A setting survives from one statement to the next: no reset ran in between.
        await kept.fetch("SELECT set_config('application_name', 'kept', false)")
        assert await kept.fetchval("SELECT current_setting('application_name')") == "kept"
        assert small.get_idle_size() == 1  # one kept, not in the pool
        await wait_until(lambda: holds(small.get_idle_size() == 2), timeout=5)
        # Back in the pool, which reset it on the way: neither connection keeps the setting.
        async with small.acquire() as one, small.acquire() as other:
            for conn in (one, other):
                name = await conn.fetchval("SELECT current_setting('application_name')")
                assert name != "kept"
    finally:
        await small.close()


async def test_an_exhausted_pool_gets_its_connection_back_at_once() -> None:
    """Whoever waits for a connection (the heartbeat, the application) must not wait
    behind the next per-job statement: with the pool at its maximum, nothing is kept."""
    single = await asyncpg.create_pool(TEST_DSN, min_size=1, max_size=1)
    assert single is not None
    try:
        kept = KeptConnections(single, keep=2, idle=60)
        assert await kept.fetchval("SELECT 1") == 1
        async with single.acquire(timeout=5) as conn:  # times out if the connection were kept
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await single.close()


async def test_concurrent_statements_use_several_and_release_all_returns_them(
    pool: asyncpg.Pool,
) -> None:
    kept = KeptConnections(pool, keep=2, idle=60)
    pids = await asyncio.gather(
        *(kept.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)") for _ in range(4))
    )
    assert len(set(pids)) == 4  # none waits for another's connection
    in_use = pool.get_size() - pool.get_idle_size()
    assert in_use >= 2  # two kept (at most `keep`), the others went back at once
    await kept.release_all()
    assert pool.get_size() - pool.get_idle_size() == 0


async def test_a_failed_statement_gives_its_connection_back(pool: asyncpg.Pool) -> None:
    kept = KeptConnections(pool, keep=2, idle=60)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await kept.fetch("SELECT 1/0")
    assert pool.get_size() - pool.get_idle_size() == 0
    assert await kept.fetchval("SELECT 1") == 1
    await kept.release_all()
