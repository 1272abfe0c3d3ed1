"""The dispatcher: claims due jobs up to the free concurrency and starts them.

It sleeps until the earliest known due time (learned from the database after each claim,
and from NOTIFY payloads), wakes at once on notifications of due work, and polls every
`poll_interval` as a backstop for anything missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic

import anyio
import anyio.lowlevel

from scheduler.running_jobs import RunningJob, RunningJobs, WorkerIdentity
from scheduler.services.claiming import Claims
from scheduler.services.loop_backoff import LoopBackoff
from scheduler.services.passes import uninterrupted
from scheduler.services.wakeup import Wakeup
from scheduler.store import ClaimedJob, JobStore

logger = logging.getLogger("scheduler.dispatcher")

#: Jobs are claimed this many seconds before they are due, so the claim's round trip and
#: commit are paid in advance; the runner then waits for the due time before starting.
CLAIM_LEAD = 0.01

#: How long a claim may hold off a shutdown; a claim slower than this is abandoned (its
#: jobs then come back after their lease, as after a crash).
CLAIM_SHIELD_SECONDS = 10.0


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        claims: Claims,
        running: RunningJobs,
        identity: WorkerIdentity,
        task_names: Callable[[], list[str]],
        *,
        batch_size: int,
        poll_interval: float,
        queue_names: Callable[[], list[str]] = lambda: ["default"],
    ) -> None:
        self._store = store
        # Which claim statement runs, and the successes each claim carries.
        self._claims = claims
        self._running = running
        self._identity = identity
        self._task_names = task_names
        self._queue_names = queue_names
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self.wakeup = Wakeup()
        # While a backlog lasts, wait for room for half a full claim and claim it in one
        # statement, instead of one claim (and one commit) per finished job.
        self._backlog = False
        # Since when (anyio clock) every claim pass has failed, and the last error.
        self.failing_since: float | None = None
        self.last_error: BaseException | None = None

    def failing_for(self) -> float:
        """Seconds every claim pass has failed for; 0 if the last one worked."""
        if self.failing_since is None:
            return 0.0
        return max(anyio.current_time() - self.failing_since, 0.0)

    def notify_due(self, delay: float) -> None:
        """A job becomes due in `delay` seconds (as measured by the database): wake up to
        claim it CLAIM_LEAD before."""
        self.wakeup.arm_in(delay - CLAIM_LEAD)

    def poll_at_least_every(self, seconds: float) -> None:
        """Notifications do not reach this replica (see Listener): look this often."""
        self._poll_interval = min(self._poll_interval, seconds)
        self.wakeup.set()

    async def run_once(self) -> int:
        """Claim what is due now, up to the free slots; return how many jobs started."""
        free = self._running.room
        names = self._task_names()
        queues = self._queue_names()
        owner = self._identity.current
        if free <= 0 or not names or not self._identity.holds(owner):
            return 0  # past the fence time, claims wait for a heartbeat (or a new identity)
        limit = min(free, self._batch_size)
        # Shielded: a claim cancelled in flight may still commit, leaving jobs marked
        # running here that never start. Shutdown therefore stops the dispatcher between
        # claims; what a claim took is started and drained. A claim that commits but whose
        # reply is lost (or that overruns the deadline) leaves rows the database says are
        # ours: the heartbeat hands those back once no claim that could explain them is
        # still in flight.
        claim = self._running.claim_sent()
        try:
            with anyio.CancelScope(shield=True) as claiming:
                claiming.deadline = anyio.current_time() + CLAIM_SHIELD_SECONDS
                claimed = await self._claims.claim(owner, names, limit, CLAIM_LEAD, queues)
            if claiming.cancelled_caught:
                raise TimeoutError(f"claiming took over {CLAIM_SHIELD_SECONDS} s")
            if not self._identity.holds(owner):
                # Fenced (or past the fence time) while the claim was in flight: start none
                # of it. The orphan sweep, or if the lease survives the heartbeat's hand
                # back, returns the rows.
                logger.warning(
                    "%d job(s) claimed as %s after it was fenced; not starting them",
                    len(claimed),
                    owner,
                )
                return 0
            early = self._add(claimed)
        finally:
            self._running.claim_done(claim)
        self._backlog = len(claimed) == limit
        try:
            if self._backlog:
                self.wakeup.set()  # a full batch: more may be due right now
            else:
                delay, clock = await self._store.next_due_delay(names, queues)
                read_at = monotonic()
                for entry in early:
                    # `clock` was read before `read_at`: still never early, now late by
                    # one quick read rather than by the claim's commit.
                    synced = read_at + (entry.claimed.due_epoch - clock)
                    entry.start_at = min(entry.start_at, synced)
                held_back = self._claims.held_back_retry
                if delay is not None and delay <= CLAIM_LEAD and held_back is not None:
                    # Due work waits for room under a limit or a lock: no notification
                    # says when a peer's job ends, so look again shortly.
                    self.wakeup.arm_in(held_back)
                elif delay is not None:
                    self.notify_due(delay)
        finally:
            for entry in early:
                self._running.admit(entry)
        return len(claimed)

    def _add(self, claimed: list[ClaimedJob]) -> list[RunningJob]:
        """Register claimed attempts; start those due now, return those claimed early."""
        arrived = monotonic()
        early: list[RunningJob] = []
        for job in claimed:
            entry = self._running.add(job)
            if job.starts_in > 0:
                # The database measured `starts_in` before we read it: waiting that long
                # from now can only start late, never early. The clock read below narrows it.
                entry.start_at = arrived + job.starts_in
                early.append(entry)
            else:
                self._running.admit(entry)
        return early

    async def run(self) -> None:
        backoff = LoopBackoff()
        while True:
            # Under a backlog neither wait below may block: this is where a stop lands.
            await anyio.lowlevel.checkpoint()
            await self._running.wait_for_room(backlog=self._backlog)
            await self.wakeup.wait(self._poll_interval)
            try:
                with uninterrupted("a claim pass"):
                    await self.run_once()
            except Exception as exc:
                if self.failing_since is None:
                    self.failing_since = anyio.current_time()
                self.last_error = exc
                delay = backoff.next_delay()
                logger.warning("claiming jobs failed (%r); retrying in %.2fs", exc, delay)
                self.wakeup.arm_in(delay)
            else:
                if self.failing_since is not None:
                    logger.info("claiming works again after %.1fs", self.failing_for())
                self.failing_since = self.last_error = None
                backoff.reset()
