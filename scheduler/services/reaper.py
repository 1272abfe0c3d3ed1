"""The reaper: any replica returns the jobs of workers whose lease expired to pending (or
to failed once their attempts are used up: max_retries plus `orphan_retries` extra for lost
leases), forgets dead workers, and fails jobs whose task no live worker has registered for
too long."""

from __future__ import annotations

import logging

import anyio

from scheduler.services.passes import FLEET_PASS_SHARE, uninterrupted
from scheduler.store import JobStore

logger = logging.getLogger("scheduler.reaper")

#: Forgetting dead workers and failing unrunnable jobs happen on every 4th sweep only.
HOUSEKEEPING_EVERY = 4


class Reaper:
    def __init__(
        self,
        store: JobStore,
        *,
        interval: float,
        unrunnable_job_timeout: float | None,
        orphan_retries: int,
        batch_size: int = 1000,
    ) -> None:
        self._store = store
        self._orphan_retries = orphan_retries
        self._interval = interval
        self._unrunnable_job_timeout = unrunnable_job_timeout
        self._batch_size = batch_size

    async def run_once(self, *, housekeeping: bool = True) -> int:
        """One sweep; returns how many orphaned jobs it reclaimed. `housekeeping` also
        forgets dead workers and fails unrunnable jobs."""
        reclaimed = 0
        while True:
            count = await self._store.reap_orphans(self._batch_size, self._orphan_retries)
            reclaimed += count
            if count < self._batch_size:
                break
        if housekeeping:
            await self._store.delete_dead_workers()
            if self._unrunnable_job_timeout is not None:
                await self._store.fail_unrunnable_jobs(
                    self._unrunnable_job_timeout, self._batch_size
                )
        return reclaimed

    async def run(self) -> None:
        # Each sweep reads every running job (and housekeeping every worker and old due
        # job): run by every replica, the fleet's cost would grow with the square of its
        # size. A pass is taken fleet-wide instead, so N replicas sweep as often as one.
        every = FLEET_PASS_SHARE * self._interval
        while True:
            try:
                with uninterrupted("an orphan sweep"):
                    if await self._store.take_fleet_pass("orphan sweep", every):
                        # Housekeeping is not urgent: every few sweeps keeps the fleet quiet.
                        housekeeping = await self._store.take_fleet_pass(
                            "housekeeping", every * HOUSEKEEPING_EVERY
                        )
                        reclaimed = await self.run_once(housekeeping=housekeeping)
                        if reclaimed:
                            logger.info("reclaimed %d orphaned job(s)", reclaimed)
            except Exception as exc:
                logger.warning("orphan sweep failed: %r", exc)
            await anyio.sleep(self._interval)
