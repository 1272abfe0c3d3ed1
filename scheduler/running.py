"""The jobs this replica is running right now: their leases, cancel scopes, and the free
concurrency slots the dispatcher may claim for."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import anyio

from scheduler.store import ClaimedJob


class CancelReason(enum.Enum):
    REQUESTED = "cancelled on request while running"
    SHUTDOWN = "released: its worker shut down before the attempt finished"
    LEASE_LOST = "its worker lost the lease"


@dataclass
class RunningJob:
    claimed: ClaimedJob
    sequence: int  # registration order, to compare against heartbeat snapshots
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: CancelReason | None = None
    start_at: float = 0.0  # anyio clock; later than now for a job claimed before due

    @property
    def job_id(self) -> str:
        return self.claimed.lease.job_id

    def cancel(self, reason: CancelReason) -> None:
        # A lost lease overrides anything: no write of this attempt can land any more.
        if self.reason is None or reason is CancelReason.LEASE_LOST:
            self.reason = reason
        self.scope.cancel()


class RunningJobs:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: dict[str, RunningJob] = {}
        self._issued = 0
        self._changed = anyio.Event()

    def add(self, claimed: ClaimedJob) -> RunningJob:
        self._issued += 1
        entry = RunningJob(claimed, self._issued)
        self._jobs[entry.job_id] = entry
        return entry

    def remove(self, entry: RunningJob) -> None:
        if self._jobs.get(entry.job_id) is entry:
            del self._jobs[entry.job_id]
        self._changed.set()
        self._changed = anyio.Event()

    def get(self, job_id: str) -> RunningJob | None:
        return self._jobs.get(job_id)

    def last_sequence(self) -> int:
        """The sequence number of the latest registration; later ones are greater."""
        return self._issued

    def cancel_all(self, reason: CancelReason) -> None:
        for entry in list(self._jobs.values()):
            entry.cancel(reason)

    @property
    def free_slots(self) -> int:
        return self.capacity - len(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._jobs.values()))

    async def wait_for_change(self) -> None:
        await self._changed.wait()

    async def wait_until_empty(self) -> None:
        while self._jobs:
            await self.wait_for_change()

    async def wait_for_free_slots(self, count: int) -> None:
        while self.free_slots < min(count, self.capacity):
            await self.wait_for_change()


class WorkerIdentity:
    """This replica's lease identity: a fresh UUID per process start, replaced whenever the
    lease is lost, because an expired lease is never revived."""

    def __init__(self) -> None:
        self.current: UUID = uuid4()
        self.registered = False

    def retire(self) -> UUID:
        old, self.current, self.registered = self.current, uuid4(), False
        return old
