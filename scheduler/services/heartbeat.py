"""The heartbeat: one statement per interval extends this replica's lease and reports the
attempts the database says it holds and their cancel requests. It reconciles both ways:

* an attempt running here that the database no longer gives to us, or that was claimed
  under an identity since fenced, is cancelled;
* an attempt the database gives to us that nothing here runs (a claim whose reply was lost
  after its commit, an outcome that could not be written) is handed back, counted as a lost
  lease, once no claim still in flight can explain it. Nothing stays `running` under a
  live replica for longer than about two heartbeat intervals.

If no heartbeat has succeeded for long enough that the lease might expire, the replica
fences itself before the database could hand its jobs to a peer: it cancels them all and
takes a fresh identity, because an expired lease is never revived.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from time import monotonic
from uuid import UUID

import anyio

from scheduler.outcomes import CancelReason
from scheduler.running_jobs import PREFETCH_MAX_WAIT, RunningJobs, WorkerIdentity
from scheduler.services.loop_backoff import LoopBackoff
from scheduler.services.passes import uninterrupted
from scheduler.store import AttemptKey, JobStore

logger = logging.getLogger("scheduler.heartbeat")


class Heartbeat:
    def __init__(
        self,
        store: JobStore,
        running: RunningJobs,
        identity: WorkerIdentity,
        task_names: Callable[[], list[str]],
        *,
        lease_time: float,
        interval: float,
        orphan_retries: int,
        on_registered: Callable[[], None] = lambda: None,
        queue_names: Callable[[], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._running = running
        self._identity = identity
        self._task_names = task_names
        self._queue_names = queue_names or (lambda: ["default"])
        self._lease_time = lease_time
        self._interval = interval
        self._orphan_retries = orphan_retries
        self._on_registered = on_registered
        # Held attempts nothing here runs, as of the previous beat, and when that was seen.
        self._unrun: set[AttemptKey] = set()
        self._unrun_seen_at = 0.0
        # Fence this long after the last successful beat was *sent*: the database's expiry
        # is at least lease_time after that, so we always stop first.
        self._fence_after = lease_time - min(interval, lease_time / 3)

    async def register(self) -> None:
        """Announce a (new) identity with a fresh lease."""
        sent_at = monotonic()
        await self._store.register_worker(
            self._identity.current,
            socket.gethostname(),
            os.getpid(),
            self._task_names(),
            self._lease_time,
            self._queue_names(),
        )
        self._identity.registered = True
        self._identity.fence_at = sent_at + self._fence_after
        logger.info("worker %s registered", self._identity.current)
        self._on_registered()  # a replacement identity may claim at once

    def fence_deadline(self) -> float:
        return self._identity.fence_at

    async def run_once(self) -> None:
        if not self._identity.registered:
            await self.register()
            return
        sent_at = monotonic()
        newest_before_send = self._running.last_sequence()
        owner = self._identity.current
        timeout = max(self.fence_deadline() - sent_at, 0.01)
        with anyio.fail_after(timeout):
            result = await self._store.heartbeat(
                owner, self._task_names(), self._lease_time, self._queue_names()
            )
        if owner != self._identity.current:
            return  # fenced while the beat was in flight
        if not result.alive:
            self.fence("the database says the lease expired")
            return
        self._identity.fence_at = sent_at + self._fence_after
        running = self._running
        for entry in running:
            if entry.recording:
                continue  # its outcome is being written; the write is fenced
            if entry.owner != owner:
                # Claimed or started under an identity that has since been fenced.
                logger.warning(
                    "task %s job %s attempt %d: lease lost; cancelling it",
                    entry.claimed.task_name,
                    *entry.key,
                )
                running.cancel(entry, CancelReason.LEASE_LOST)
            elif entry.job_id in result.cancel_requested:
                running.cancel(entry, CancelReason.REQUESTED)
            elif entry.key not in result.owned and entry.sequence <= newest_before_send:
                logger.warning(
                    "task %s job %s attempt %d is no longer ours; cancelling it",
                    entry.claimed.task_name,
                    *entry.key,
                )
                running.cancel(entry, CancelReason.LEASE_LOST)
        running.expire_waiting(PREFETCH_MAX_WAIT)
        await self._hand_back_unrun(owner, result.owned)

    async def _hand_back_unrun(self, owner: UUID, held: frozenset[AttemptKey]) -> None:
        """Hand back held attempts nothing here runs. A claim can commit before its reply
        is handled, so an attempt is handed back only when it was already unrun at the
        previous beat and no claim sent before that beat is still in flight: its claim's
        reply was then handled (and it finished) or will never be."""
        now = monotonic()
        unrun = set(held) - self._running.attempt_keys()
        oldest_claim = self._running.oldest_claim_in_flight()
        if oldest_claim is None or oldest_claim > self._unrun_seen_at:
            confirmed = unrun & self._unrun
        else:
            confirmed = set()
        self._unrun, self._unrun_seen_at = unrun - confirmed, now
        if confirmed:
            await self._store.reclaim_attempts(owner, sorted(confirmed), self._orphan_retries)

    def fence(self, why: str) -> None:
        old = self._identity.retire()
        logger.error(
            "worker %s fenced itself (%s): cancelling %d running job(s); continuing as %s",
            old,
            why,
            len(self._running),
            self._identity.current,
        )
        self._unrun = set()
        for entry in self._running:
            if not entry.recording and entry.owner != self._identity.current:
                self._running.cancel(entry, CancelReason.LEASE_LOST)

    async def run(self) -> None:
        # After a failed beat, try again soon (0.1 s, doubling up to the interval): the
        # next regular beat may be due only at the fence time, and a database restart of a
        # second would then fence the replica and cancel its jobs.
        retry = LoopBackoff(maximum=self._interval)
        while True:
            failed = False
            try:
                with uninterrupted("a heartbeat"):
                    await self.run_once()
            except Exception as exc:
                failed = True
                logger.warning("heartbeat failed: %r", exc)
            now = monotonic()
            if self._identity.registered and now >= self.fence_deadline():
                self.fence("no successful heartbeat within the lease time")
            if failed:
                wake_at = now + retry.next_delay()
            else:
                retry.reset()
                wake_at = now + self._interval
            if self._identity.registered:
                wake_at = min(wake_at, self.fence_deadline())
            else:
                wake_at = now + min(self._interval, 1.0)  # re-register soon
            await anyio.sleep(max(wake_at - monotonic(), 0.0))
