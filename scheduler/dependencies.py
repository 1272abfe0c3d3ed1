"""Jobs that wait for others (`depends_on`): the checks made before anything is written,
and the order in which a batch's dependencies are recorded.

The database keeps the graph acyclic by construction (dependencies are added only to a
fresh job nobody depends on yet, and must exist); within one batch the jobs are recorded
dependencies-first, so a batch may hold a whole workflow, and a cycle inside it is refused
here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from scheduler.errors import InvalidJobError
from scheduler.models import ConflictResolution
from scheduler.store import NewJob


def check_batch(jobs: Sequence[NewJob], conflict: ConflictResolution) -> None:
    """Raise `InvalidJobError` for dependencies that cannot be recorded; writes nothing."""
    if not any(job.depends_on for job in jobs):
        return  # nothing to order: spares bulk enqueue a pass building sets per job
    if conflict is ConflictResolution.REPLACE and any(job.depends_on for job in jobs):
        raise InvalidJobError(
            "depends_on cannot be combined with ConflictResolution.REPLACE (a replaced job"
            " would silently keep or drop the dependencies it had); use RAISE or IGNORE, or"
            " cancel the job and schedule it under a new id"
        )
    for job in jobs:
        if job.job_id in job.depends_on:
            raise InvalidJobError(f"job {job.job_id!r} cannot depend on itself")
    dependency_order(jobs)


def dependency_order(jobs: Sequence[NewJob]) -> list[NewJob]:
    """The batch with every job after those of the batch it depends on (otherwise in the
    order given); `InvalidJobError` naming the jobs of a cycle."""
    in_batch = {job.job_id for job in jobs}
    waiting_on = {job.job_id: {d for d in job.depends_on if d in in_batch} for job in jobs}
    dependants: dict[str, list[str]] = {}
    for job_id, needs in waiting_on.items():
        for needed in needs:
            dependants.setdefault(needed, []).append(job_id)
    by_id = {job.job_id: job for job in jobs}
    ready = deque(job.job_id for job in jobs if not waiting_on[job.job_id])
    ordered: list[NewJob] = []
    while ready:
        job_id = ready.popleft()
        ordered.append(by_id[job_id])
        for dependant in dependants.get(job_id, ()):
            waiting_on[dependant].discard(job_id)
            if not waiting_on[dependant]:
                ready.append(dependant)
    if len(ordered) < len(jobs):
        stuck = sorted(job_id for job_id, needs in waiting_on.items() if needs)
        raise InvalidJobError(
            f"the dependencies of jobs {', '.join(map(repr, stuck[:5]))} form a cycle;"
            " a job can only depend on jobs that can finish without it"
        )
    return ordered
