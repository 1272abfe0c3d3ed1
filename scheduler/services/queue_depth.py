"""The queue-depth reader: every few seconds, one read of each queue's due backlog and the
age of its oldest due job, handed to the extensions that asked (the Prometheus gauges).

It runs only when an extension asks for it, once per replica whatever the number of
extensions, so scrapes and jobs never cause database reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio

from scheduler.extensions import QueueDepth
from scheduler.services.loop_backoff import LoopBackoff
from scheduler.services.passes import uninterrupted
from scheduler.store import JobStore

logger = logging.getLogger("scheduler.queue_depth")


class QueueDepthReader:
    def __init__(
        self,
        store: JobStore,
        *,
        interval: float,
        on_depths: Callable[[Sequence[QueueDepth]], None],
    ) -> None:
        self._store = store
        self._interval = interval
        self._on_depths = on_depths

    async def run_once(self) -> list[QueueDepth]:
        depths = await self._store.queue_depths()
        self._on_depths(depths)
        return depths

    async def run(self) -> None:
        backoff = LoopBackoff()
        while True:
            delay = self._interval
            try:
                with uninterrupted("a queue-depth read"):
                    await self.run_once()
            except Exception as exc:
                delay = max(delay, backoff.next_delay())
                logger.warning("reading queue depths failed (%r); retrying in %.2fs", exc, delay)
            else:
                backoff.reset()
            await anyio.sleep(delay)
