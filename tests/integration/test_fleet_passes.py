"""Fleet-wide passes: the orphan sweep, housekeeping and pruning run about once per
interval for the whole fleet, not once per replica, so what the fleet's sweeps read does
not grow with the square of its size (issue 21, item 3)."""

from __future__ import annotations

import itertools

import anyio
import asyncpg

from scheduler.postgres.store import PostgresJobStore
from scheduler.services.passes import FLEET_PASS_SHARE
from scheduler.services.pruner import Pruner
from scheduler.services.reaper import Reaper
from tests.support.db import wait_until


async def test_a_pass_is_taken_once_per_interval_by_the_whole_fleet(
    pool: asyncpg.Pool, migrated: str
) -> None:
    one, other = PostgresJobStore(pool, migrated), PostgresJobStore(pool, migrated)
    assert await one.take_fleet_pass("orphan sweep", 3600)
    assert not await other.take_fleet_pass("orphan sweep", 3600)  # taken by a peer
    assert not await one.take_fleet_pass("orphan sweep", 3600)
    assert await other.take_fleet_pass("housekeeping", 3600)  # passes are separate
    assert await other.take_fleet_pass("orphan sweep", 0)  # the interval has passed


class CountingStore(PostgresJobStore):
    """Records the database time of each orphan sweep and pruning pass it runs."""

    sweeps: list[float]
    prunes: list[float]

    async def now(self) -> float:
        return float(
            await self.pool.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        )

    async def reap_orphans(self, limit: int, orphan_retries: int) -> int:
        self.sweeps.append(await self.now())
        return await super().reap_orphans(limit, orphan_retries)

    async def prune_finished_jobs(self, older_than_seconds: float, limit: int) -> int:
        self.prunes.append(await self.now())
        return await super().prune_finished_jobs(older_than_seconds, limit)


async def test_replicas_reapers_share_one_sweep_per_interval(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """Four replicas' reapers (interval 0.2 s) running together: consecutive sweeps of the
    fleet, by the database clock, are at least the fleet-pass share of an interval apart,
    whoever ran them; each replica alone would have swept every interval."""
    interval = 0.2
    stores = [CountingStore(pool, migrated) for _ in range(4)]
    sweeps: list[float] = []
    for store in stores:
        store.sweeps = sweeps
    async with anyio.create_task_group() as replicas:
        for store in stores:
            reaper = Reaper(store, interval=interval, unrunnable_job_timeout=60, orphan_retries=1)
            replicas.start_soon(reaper.run)

        async def six_sweeps() -> bool:
            return len(sweeps) >= 6

        await wait_until(six_sweeps, timeout=30)
        replicas.cancel_scope.cancel()
    ordered = sorted(sweeps)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    # The pass is taken by the database clock before the sweep reads it: allow the few ms
    # between the two reads.
    assert min(gaps) >= FLEET_PASS_SHARE * interval - 0.05, gaps


async def test_replicas_pruners_share_one_pass_per_interval(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """As the sweeps: four replicas' pruners (interval 0.2 s) prune about once per interval
    for the whole fleet, whoever prunes."""
    interval = 0.2
    stores = [CountingStore(pool, migrated) for _ in range(4)]
    prunes: list[float] = []
    for store in stores:
        store.prunes = prunes
    async with anyio.create_task_group() as replicas:
        for store in stores:
            replicas.start_soon(Pruner(store, retention=3600, interval=interval).run)

        async def six_passes() -> bool:
            return len(prunes) >= 6

        await wait_until(six_passes, timeout=30)
        replicas.cancel_scope.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(prunes))]
    assert min(gaps) >= FLEET_PASS_SHARE * interval - 0.05, gaps
