"""A task module for the `scheduler worker` second-signal test: a job that runs until it is
cancelled, and says when it started."""

from __future__ import annotations

import asyncio

import anyio

from scheduler import task


@task(name="drain-test:run-long")
async def run_long(marker: str) -> None:
    await anyio.Path(marker).write_text("started")
    await asyncio.sleep(3600)
