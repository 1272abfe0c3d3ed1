"""Where the tests find PostgreSQL, and helpers shared by tests and replica processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

#: Point the suite at your own server with SCHEDULER_TEST_DSN.
TEST_DSN = os.environ.get("SCHEDULER_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")

#: Settings that make leases, sweeps and polls fast enough for tests.
FAST = {
    "lease_time": 2.0,
    "heartbeat_interval": 0.4,
    "poll_interval": 0.5,
    "reap_interval": 0.3,
    "shutdown_grace": 5.0,
    "listener_check_interval": 1.0,
    "listener_check_timeout": 1.0,
}


def unique_schema(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


async def wait_until(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await anyio.sleep(interval)


async def holds(value: object) -> bool:
    """Wrap a plain condition for `wait_until(lambda: holds(...))`."""
    return bool(value)


async def has_status(scheduler: Any, job_id: str, status: Any) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status is status


async def count_jobs(pool: Any, schema: str) -> int:
    """How many rows the schema's jobs table holds (to check that nothing was written)."""
    from scheduler.postgres.sql import quote_identifier

    return int(await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(schema)}.jobs"))


async def slot_jobs(pool: Any, schema: str, schedule_id: str) -> list[Any]:
    """The jobs a recurring schedule fired, in slot order."""
    from scheduler.postgres.sql import quote_identifier

    return list(
        await pool.fetch(
            f"SELECT job_id, fire_time, execution_time, status FROM {quote_identifier(schema)}.jobs"
            " WHERE schedule_id = $1 ORDER BY fire_time",
            schedule_id,
        )
    )
