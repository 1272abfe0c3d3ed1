"""The attempts this replica holds right now: their leases, cancel scopes and stop signals,
the free concurrency slots the dispatcher may claim for, and the claims still in flight.

Entries are keyed by attempt, not by job: after a lost lease the same job can be claimed
again (by this replica, under a new identity) while the old attempt's thread still runs,
and both must be counted and cancelled on their own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import monotonic
from uuid import UUID, uuid4

from scheduler.context import StopSignal
from scheduler.outcomes import CancelReason
from scheduler.store import AttemptKey, ClaimedJob

#: Claim ahead (prefetch) only while jobs hold a slot this long on average or less...
PREFETCH_MAX_MEAN_RUN = 0.05
#: ...as many as the slots get through in this long at that mean...
PREFETCH_HORIZON = 0.1
#: ...and hand back an attempt claimed ahead that still waits for a slot after this long.
PREFETCH_MAX_WAIT = 1.0
#: A job still running this long after a cancel request interrupted it is interrupted
#: again (its code swallowed the cancel); in between, its clean-up runs undisturbed.
CANCEL_REPEAT_AFTER = 30.0


@dataclass(eq=False)
class RunningJob:
    claimed: ClaimedJob
    sequence: int  # registration order, to compare against heartbeat snapshots
    reason: CancelReason | None = None
    start_at: float = 0.0  # monotonic clock; later than now for a job claimed before due
    #: True while the attempt holds a slot (its code runs); see RunningJobs.admit.
    executing: bool = False
    #: True while it waits for a slot, claimed ahead (prefetch).
    waiting: bool = False
    #: True once its code is over and its outcome is being written: nothing can stop it
    #: any more. Until then (registered, waiting, running) a cancel applies.
    recording: bool = False
    queued_at: float = 0.0
    slot_at: float = 0.0
    #: What a synchronous job polls to stop cooperatively (`current_job().cancel_requested`).
    stop: StopSignal = field(default_factory=StopSignal)
    task: asyncio.Task[None] | None = None
    #: True only while the runner task is inside the job's code (or waiting to start it):
    #: a cancel then interrupts the task there, and nowhere else (never its outcome write).
    interruptible: bool = False
    #: How many times the task was cancelled while interruptible (the runner balances them).
    interruptions: int = 0
    #: When the task was last interrupted (monotonic clock).
    interrupted_at: float = 0.0
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
        previous = self.reason
        # A lost lease overrides anything: no write of this attempt can land any more.
        if self.reason is None or reason is CancelReason.LEASE_LOST:
            self.reason = reason
        self.stop.request(self.reason.value if self.reason else reason.value)
        # The heartbeat reports a cancel request on every beat until the attempt ends:
        # interrupting each time would cut short the job's own clean-up (an `except
        # CancelledError` or `finally` that awaits), so a request interrupts once, and
        # again only CANCEL_REPEAT_AFTER later (a cancel the job's code swallowed, or that
        # asyncio.wait_for lost before Python 3.12). A lost lease insists at every report:
        # a peer may run the job soon, and it must not run beside that peer.
        if (
            self.reason is not previous
            or self.reason is CancelReason.LEASE_LOST
            or monotonic() - self.interrupted_at >= CANCEL_REPEAT_AFTER
        ):
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
            self.interrupted_at = monotonic()
            self.task.cancel()


class RunningJobs:
    """Attempts held here. Each takes one of `capacity` slots while its code runs. With a
    `prefetch`, up to that many more may be claimed ahead and wait here for a slot, so the
    next claim's round trip overlaps the running jobs instead of following them; they are
    claimed ahead only while jobs have been finishing quickly (see `room`), and one left
    waiting over PREFETCH_MAX_WAIT is handed back (`expire_waiting`)."""

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        start: Callable[[RunningJob], None] = lambda entry: None,
    ) -> None:
        self.capacity = capacity
        self.prefetch = prefetch
        self._start = start
        self._attempts: dict[AttemptKey, RunningJob] = {}
        self._executing = 0
        self._waiting: deque[RunningJob] = deque()
        self._issued = 0
        # Mean time a job held its slot (exponentially weighted); None until `capacity`
        # jobs finished, so nothing is claimed ahead before jobs are known to be quick.
        self._mean_run: float | None = None
        self._finished = 0
        # Created only when someone waits: most changes happen with nobody waiting.
        self._changed: asyncio.Future[None] | None = None
        self._claims: dict[int, float] = {}  # claim number -> when it was sent
        self._claims_issued = 0

    def add(self, claimed: ClaimedJob) -> RunningJob:
        """Register a claimed attempt (it holds no slot yet: see `admit`)."""
        self._issued += 1
        entry = RunningJob(claimed, self._issued)
        self._attempts[entry.key] = entry
        return entry

    def admit(self, entry: RunningJob) -> None:
        """Start the attempt in a free slot, or queue it for the next one. One that is
        already cancelled starts at once without a slot: it only records why."""
        if entry.reason is not None:
            self._start(entry)
        elif self._executing < self.capacity and not self._waiting:
            self._take_slot(entry)
        else:
            entry.waiting, entry.queued_at = True, monotonic()
            self._waiting.append(entry)

    def _take_slot(self, entry: RunningJob) -> None:
        entry.waiting, entry.executing, entry.slot_at = False, True, monotonic()
        self._executing += 1
        self._start(entry)

    def _admit_waiting(self) -> None:
        while self._waiting and self._executing < self.capacity:
            entry = self._waiting.popleft()
            if self._attempts.get(entry.key) is entry:
                self._take_slot(entry)

    def cancel(self, entry: RunningJob, reason: CancelReason) -> None:
        """Cancel an attempt running or waiting here; one waiting starts now to record it."""
        entry.cancel(reason)
        if entry.waiting:
            entry.waiting = False
            self._waiting.remove(entry)
            self._start(entry)
            self._notify()

    def expire_waiting(self, max_wait: float) -> None:
        """Hand back attempts that waited for a slot over `max_wait` seconds: the jobs ahead
        of them turned out slow, and a peer may have room now."""
        cutoff = monotonic() - max_wait
        expired = [entry for entry in self._waiting if entry.queued_at <= cutoff]
        for entry in expired:
            self.cancel(entry, CancelReason.NOT_STARTED)
        if expired:
            # Evidence that jobs are slow now: claim no more ahead until many quick ones
            # have finished (each moves the mean an eighth of the way).
            self._mean_run = max(self._mean_run or 0.0, max_wait)

    def finish_execution(self, entry: RunningJob) -> None:
        """The job's code returned: its slot is free; the outcome is still being written."""
        entry.recording = True
        if entry.executing and self._attempts.get(entry.key) is entry:
            entry.executing = False
            self._executing -= 1
            ran = monotonic() - entry.slot_at
            self._finished += 1
            if self._mean_run is not None:
                self._mean_run += (ran - self._mean_run) / 8
            elif self._finished >= self.capacity:
                self._mean_run = ran
            self._admit_waiting()
            self._notify()

    def remove(self, entry: RunningJob) -> None:
        """The attempt is over here: recorded, handed back or abandoned."""
        if self._attempts.get(entry.key) is entry:
            if entry.executing:
                entry.executing = False
                self._executing -= 1
            if entry.waiting:
                entry.waiting = False
                self._waiting.remove(entry)
            del self._attempts[entry.key]
            self._admit_waiting()
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
        """Cancel every attempt not already recording its outcome."""
        for entry in list(self._attempts.values()):
            if not entry.recording:
                self.cancel(entry, reason)

    def cancel_waiting(self, reason: CancelReason) -> None:
        for entry in list(self._waiting):
            self.cancel(entry, reason)

    @property
    def room(self) -> int:
        """How many attempts a claim may take now."""
        return self._limit() - self._executing - len(self._waiting)

    def _limit(self) -> int:
        """The slots, plus as many claimed ahead as the slots get through in about
        PREFETCH_HORIZON at the current mean (at most `prefetch`), while jobs hold their
        slots briefly: one claimed ahead then waits for a fraction of a second at most."""
        mean = self._mean_run
        if mean is None or mean > PREFETCH_MAX_MEAN_RUN:
            return self.capacity
        through = self.capacity * PREFETCH_HORIZON / mean if mean > 0 else self.prefetch
        return self.capacity + min(self.prefetch, round(through))

    @property
    def free_slots(self) -> int:
        return self.capacity - self._executing

    @property
    def executing(self) -> int:
        return self._executing

    @property
    def waiting(self) -> int:
        return len(self._waiting)

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

    async def wait_for_room(self, *, backlog: bool) -> None:
        """Until a claim may take an attempt; under a backlog, half as many as a claim may
        take at most, so that one statement (and one commit) claims many."""
        while self.room < (max(1, self._limit() // 2) if backlog else 1):
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
