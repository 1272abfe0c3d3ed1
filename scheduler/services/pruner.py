"""The pruner: deletes finished jobs older than the retention period, in small batches so
no single statement holds many locks. A pass is taken fleet-wide (as the reaper's): N
replicas prune as often as one, whichever of them takes the pass."""

from __future__ import annotations

import logging

import anyio

from scheduler.services.passes import FLEET_PASS_SHARE, uninterrupted
from scheduler.store import JobStore

logger = logging.getLogger("scheduler.pruner")


class Pruner:
    def __init__(
        self, store: JobStore, *, retention: float, interval: float, batch_size: int = 1000
    ) -> None:
        self._store = store
        self._retention = retention
        self._interval = interval
        self._batch_size = batch_size

    async def run_once(self) -> int:
        deleted = 0
        while True:
            count = await self._store.prune_finished_jobs(self._retention, self._batch_size)
            deleted += count
            if count < self._batch_size:
                return deleted

    async def run(self) -> None:
        while True:
            try:
                deleted = 0
                with uninterrupted("a pruning pass"):
                    if await self._store.take_fleet_pass(
                        "prune", FLEET_PASS_SHARE * self._interval
                    ):
                        deleted = await self.run_once()
                if deleted:
                    logger.info("pruned %d finished job(s)", deleted)
            except Exception as exc:
                logger.warning("pruning failed: %r", exc)
            await anyio.sleep(self._interval)
