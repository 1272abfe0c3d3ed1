"""The ticker: turns the due slots of recurring schedules into jobs.

Every replica runs one. It sleeps until the earliest next fire time (asked of the
database, and pushed by NOTIFY when a schedule changes), then locks the due schedules with
SKIP LOCKED, so each schedule is fired by one replica at a time; the unique slot key makes
a second firing of the same slot a no-op in any case.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

import anyio
import anyio.lowlevel

from scheduler.recurring import (
    FiringPass,
    SlotJob,
    StoredDueSchedule,
    plan_firing,
    plan_first_fires,
)
from scheduler.services.loop_backoff import LoopBackoff
from scheduler.services.passes import uninterrupted
from scheduler.services.wakeup import Wakeup
from scheduler.store import FirePlanner, JobStore

logger = logging.getLogger("scheduler.ticker")

RECHECK_LOCKED_DELAY = 0.05

#: How long a firing pass may hold off a shutdown; a slower one is rolled back (its slots
#: stay due, for the next pass of any replica).
FIRE_SHIELD_SECONDS = 10.0


class Ticker:
    def __init__(
        self,
        store: JobStore,
        *,
        poll_interval: float,
        batch_size: int = 100,
        on_fired: Callable[[SlotJob], None] | None = None,
    ) -> None:
        self._store = store
        self._on_fired = on_fired
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._rng = random.Random()
        self.wakeup = Wakeup()

    def notify_due(self, delay: float) -> None:
        """A schedule fires in `delay` seconds (as measured by the database)."""
        self.wakeup.arm_in(delay)

    def poll_at_least_every(self, seconds: float) -> None:
        """Notifications do not reach this replica (see Listener): look this often."""
        self._poll_interval = min(self._poll_interval, seconds)
        self.wakeup.set()

    async def run_once(self) -> int:
        """Fire every schedule due now; return how many were due."""
        delay = await self._store.next_schedule_delay()
        if delay is None or delay > 0:  # the common idle case: one cheap read, no lock
            if delay is not None:
                self.wakeup.arm_in(delay)
            return 0
        # Schedules added by SQL first get their first fire time (they may be due at once).
        while await self._store.plan_new_schedules(self._batch_size, plan_first_fires):
            pass
        fired = 0
        while True:
            # Shielded: a shutdown lets the pass in flight commit instead of cancelling its
            # transaction half-way; it stops the ticker between passes.
            plans: list[FiringPass] = []
            with anyio.CancelScope(shield=True) as firing:
                firing.deadline = anyio.current_time() + FIRE_SHIELD_SECONDS
                count = await self._store.fire_due_schedules(self._batch_size, self._planner(plans))
            if firing.cancelled_caught:
                raise TimeoutError(f"firing schedules took over {FIRE_SHIELD_SECONDS} s")
            if self._on_fired is not None:  # committed: tell whoever listens
                for slot in (job for plan in plans for job in plan.jobs):
                    self._on_fired(slot)
            fired += count
            if count < self._batch_size:
                break
            await anyio.lowlevel.checkpoint()  # a backlog of schedules: stoppable in between
        delay = await self._store.next_schedule_delay()
        if delay is not None:
            # Still due after our pass: another replica holds it and will advance it (its
            # NOTIFY re-arms us); look again soon rather than spin.
            self.wakeup.arm_in(max(delay, RECHECK_LOCKED_DELAY))
        return fired

    def _planner(self, plans: list[FiringPass]) -> FirePlanner:
        def plan(due: Sequence[StoredDueSchedule], now: datetime) -> FiringPass:
            planned = plan_firing(due, now, self._rng)
            plans.append(planned)
            return planned

        return plan

    async def run(self) -> None:
        backoff = LoopBackoff()
        while True:
            # Look first, then sleep: a slot due at start (missed while no replica ran, or
            # declared before LISTEN was up, its NOTIFY lost) fires now, not a poll later.
            try:
                with uninterrupted("a firing pass"):
                    await self.run_once()
            except Exception as exc:
                delay = backoff.next_delay()
                logger.warning("firing schedules failed (%r); retrying in %.2fs", exc, delay)
                self.wakeup.arm_in(delay)
            else:
                backoff.reset()
            await self.wakeup.wait(self._poll_interval)
