"""Jobs for benchmarks/backends.py: the same no-op on the event loop and in a child."""

from __future__ import annotations

from scheduler import task


async def async_noop() -> None:
    return None


@task(executor="process")
def process_noop() -> None:
    return None
