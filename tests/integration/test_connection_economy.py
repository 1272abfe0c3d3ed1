"""Connection economy (issue 21): an idle replica holds at most two server connections, the
listener's and one the pool keeps, on a pool configured as docs/scale.md says."""

from __future__ import annotations

import anyio
import asyncpg

from tests.conftest import SchedulerFactory
from tests.support.db import TEST_DSN, unique_schema, wait_until

#: The services' own intervals (not the suite's fast ones): an idle replica, as in production.
IDLE = {
    "heartbeat_interval": 10.0,
    "reap_interval": 15.0,
    "poll_interval": 30.0,
    "listener_check_interval": 15.0,
    "lease_time": 30.0,
}


async def server_connections(monitor: asyncpg.Pool, application_name: str) -> int:
    count: int = await monitor.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
    )
    return count


async def test_an_idle_replica_settles_at_two_server_connections(
    pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory
) -> None:
    name = unique_schema("economy")
    # docs/scale.md's pool, with a short idle lifetime so the test does not wait a minute.
    replica_pool = await asyncpg.create_pool(
        TEST_DSN,
        min_size=1,
        max_size=14,
        max_inactive_connection_lifetime=1.0,
        server_settings={"application_name": name},
    )
    try:
        async with make_scheduler(db_pool=replica_pool, **IDLE):
            # Starting, every service makes its first pass at once: several connections,
            # idle in the pool for max_inactive_connection_lifetime. Settled: a second at 2.
            calm: list[int] = []

            async def settled() -> bool:
                held = await server_connections(pool, name)
                calm[:] = [*calm, held] if held <= 2 else []
                return len(calm) >= 10

            await wait_until(settled, timeout=20, interval=0.1, message="the replica to settle")
            held = []
            for _ in range(30):  # three seconds of an idle replica
                held.append(await server_connections(pool, name))
                await anyio.sleep(0.1)
            assert max(held) <= 2, held
            assert min(held) >= 1  # the listener's, for as long as it runs
    finally:
        await replica_pool.close()
