"""The attempts this replica holds right now: their leases, cancel scopes and stop signals,
the free concurrency slots the dispatcher may claim for, and the claims still in flight.

Entries are keyed by attempt, not by job: after a lost lease the same job can be claimed
again (by this replica, under a new identity) while the old attempt's thread still runs,
and both must be counted and cancelled on their own.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import monotonic
from uuid import UUID, uuid4

from scheduler.context import StopSignal
from scheduler.store import AttemptKey, ClaimedJob


class CancelReason(enum.Enum):
    REQUESTED = "cancelled on request while running"
    SHUTDOWN = "released: its worker shut down before the attempt finished"
    LEASE_LOST = "its worker lost the lease"


@dataclass(eq=False)
class RunningJob:
    claimed: ClaimedJob
    sequence: int  # registration order, to compare against heartbeat snapshots
    reason: CancelReason | None = None
    start_at: float = 0.0  # monotonic clock; later than now for a job claimed before due
    #: True while the job's code runs (it holds a slot); False while its outcome is written.
    executing: bool = True
    #: What a synchronous job polls to stop cooperatively (`current_job().cancel_requested`).
    stop: StopSignal = field(default_factory=StopSignal)
    task: asyncio.Task[None] | None = None
    #: True only while the runner task is inside the job's code (or waiting to start it):
    #: a cancel then interrupts the task there, and nowhere else (never its outcome write).
    interruptible: bool = False
    #: How many times the task was cancelled while interruptible (the runner balances them).
    interruptions: int = 0
    timed_out: bool = False

    @property
    def job_id(self) -> str:
        return self.claimed.lease.job_id

    @property
    def key(self) -> AttemptKey:
        return (self.claimed.lease.job_id, self.claimed.lease.attempt)

    @property
    def owner(self) -> UUID:
        return self.claimed.lease.owner

    def cancel(self, reason: CancelReason) -> None:
        # A lost lease overrides anything: no write of this attempt can land any more.
        if self.reason is None or reason is CancelReason.LEASE_LOST:
            self.reason = reason
        self.stop.request(self.reason.value if self.reason else reason.value)
        self.interrupt()

    def time_out(self) -> None:
        """The attempt's timeout passed (a timer callback on the event loop)."""
        if self.interruptible:
            self.timed_out = True
            self.stop.request("timed out")
            self.interrupt()

    def interrupt(self) -> None:
        # Before the runner reaches the job (or after it left) there is nothing to
        # interrupt: the runner checks `reason` before starting it.
        if self.interruptible and self.task is not None:
            self.interruptions += 1
            self.task.cancel()


class RunningJobs:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._attempts: dict[AttemptKey, RunningJob] = {}
        self._executing = 0
        self._issued = 0
        # Created only when someone waits: most changes happen with nobody waiting.
        self._changed: asyncio.Future[None] | None = None
        self._claims: dict[int, float] = {}  # claim number -> when it was sent
        self._claims_issued = 0

    def add(self, claimed: ClaimedJob) -> RunningJob:
        self._issued += 1
        entry = RunningJob(claimed, self._issued)
        self._attempts[entry.key] = entry
        self._executing += 1
        return entry

    def finish_execution(self, entry: RunningJob) -> None:
        """The job's code returned: its slot is free; the outcome is still being written."""
        if entry.executing and self._attempts.get(entry.key) is entry:
            entry.executing = False
            self._executing -= 1
            self._notify()

    def remove(self, entry: RunningJob) -> None:
        """The attempt is over here: recorded, handed back or abandoned."""
        if self._attempts.get(entry.key) is entry:
            if entry.executing:
                entry.executing = False
                self._executing -= 1
            del self._attempts[entry.key]
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def for_job(self, job_id: str) -> list[RunningJob]:
        return [entry for entry in self._attempts.values() if entry.job_id == job_id]

    def attempt_keys(self) -> set[AttemptKey]:
        return set(self._attempts)

    def last_sequence(self) -> int:
        """The sequence number of the latest registration; later ones are greater."""
        return self._issued

    def cancel_all(self, reason: CancelReason) -> None:
        for entry in list(self._attempts.values()):
            if entry.executing:
                entry.cancel(reason)

    @property
    def free_slots(self) -> int:
        return self.capacity - self._executing

    @property
    def executing(self) -> int:
        return self._executing

    def __len__(self) -> int:
        """Attempts held: running, or having their outcome written."""
        return len(self._attempts)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._attempts.values()))

    async def wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        # Shielded: a cancelled waiter must not cancel the future other waiters share.
        await asyncio.shield(self._changed)

    async def wait_until_empty(self) -> None:
        while self._attempts:
            await self.wait_for_change()

    async def wait_for_free_slots(self, count: int) -> None:
        while self.free_slots < min(count, self.capacity):
            await self.wait_for_change()

    # -- claims in flight -------------------------------------------------------------
    # A claim can commit rows before its reply arrives; until the reply is handled those
    # rows are ours in the database but unknown here. The heartbeat must not hand them back.
    def claim_sent(self) -> int:
        self._claims_issued += 1
        self._claims[self._claims_issued] = monotonic()
        return self._claims_issued

    def claim_done(self, number: int) -> None:
        """The claim's reply was handled, or the claim was abandoned (never started)."""
        self._claims.pop(number, None)

    def oldest_claim_in_flight(self) -> float | None:
        return min(self._claims.values(), default=None)


class WorkerIdentity:
    """This replica's lease identity: a fresh UUID per process start, replaced whenever the
    lease is lost, because an expired lease is never revived."""

    def __init__(self) -> None:
        self.current: UUID = uuid4()
        self.registered = False
        #: When this replica must consider its lease lost (monotonic clock), ahead of the
        #: database's expiry; the heartbeat moves it on after every successful beat.
        self.fence_at = 0.0

    def retire(self) -> UUID:
        old, self.current, self.registered = self.current, uuid4(), False
        return old

    def holds(self, owner: UUID) -> bool:
        """Whether work claimed as `owner` may still start or be written. False as soon as
        the fence time passed, even before the heartbeat gets to fence: a replica resuming
        from a freeze must not start what it claimed before it froze."""
        return self.registered and owner == self.current and monotonic() < self.fence_at
