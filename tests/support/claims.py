"""Driving the store's claim and success writes directly, as the dispatcher and the runner
do through the claim policy and the completion batcher."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from scheduler.services.claiming import Claims
from scheduler.store import ClaimedJob, JobStore, Lease, Success


async def claim(
    store: JobStore,
    owner: UUID,
    task_names: Sequence[str],
    limit: int,
    lead: float = 0.0,
    queues: Sequence[str] = ("default",),
) -> list[ClaimedJob]:
    """One claim pass of a fresh replica (its policy knows nothing of earlier claims):
    the plain claim, followed by the flow claim when flow control may hold work back."""
    return await Claims(store).claim(owner, task_names, limit, lead, queues)


async def complete(store: JobStore, lease: Lease) -> bool:
    """Record `lease`'s success on its own, fenced; True when it was written."""
    if not isinstance(lease, Success):
        lease = Success(lease.job_id, lease.owner, lease.attempt)
    return lease.job_id in await store.record_successes([lease])
