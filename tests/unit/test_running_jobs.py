"""Slots and the prefetch of RunningJobs, without a database: which attempts start, which
wait, when a claim may take more, and what goes back."""

from __future__ import annotations

from uuid import uuid4

import pytest

from scheduler.outcomes import CancelReason
from scheduler.running_jobs import (
    PREFETCH_MAX_MEAN_RUN,
    RunningJob,
    RunningJobs,
)
from scheduler.store import ClaimedJob, Lease

OWNER = uuid4()


def claimed(n: int) -> ClaimedJob:
    return ClaimedJob(Lease(f"job-{n}", OWNER, 1), "task", "[]", "{}", 0, None)


class Started(list[RunningJob]):
    def ids(self) -> list[str]:
        return [entry.job_id for entry in self]


def quick_jobs_done(running: RunningJobs, started: Started, count: int) -> None:
    """`count` attempts that each held their slot for no time at all."""
    for n in range(1000, 1000 + count):
        entry = running.add(claimed(n))
        running.admit(entry)
        running.finish_execution(entry)
        running.remove(entry)
    started.clear()


def test_without_a_known_quick_mean_a_claim_takes_only_free_slots() -> None:
    started = Started()
    running = RunningJobs(capacity=2, prefetch=2, start=started.append)
    assert running.room == 2  # nothing has finished yet: no claiming ahead
    for n in range(2):
        running.admit(running.add(claimed(n)))
    assert started.ids() == ["job-0", "job-1"]
    assert running.room == 0 and running.executing == 2


def test_once_jobs_are_quick_a_claim_takes_the_prefetch_and_it_waits_for_slots() -> None:
    started = Started()
    running = RunningJobs(capacity=2, prefetch=2, start=started.append)
    quick_jobs_done(running, started, 2)
    assert running.room == 4
    entries = [running.add(claimed(n)) for n in range(4)]
    for entry in entries:
        running.admit(entry)
    assert started.ids() == ["job-0", "job-1"]  # two slots
    assert running.waiting == 2 and running.room == 0
    running.finish_execution(entries[0])  # a slot frees: the oldest waiting one takes it
    assert started.ids() == ["job-0", "job-1", "job-2"]
    assert entries[2].executing and not entries[2].waiting


def test_a_cancelled_waiting_attempt_starts_at_once_without_a_slot() -> None:
    started = Started()
    running = RunningJobs(capacity=1, prefetch=1, start=started.append)
    quick_jobs_done(running, started, 1)
    first, second = running.add(claimed(0)), running.add(claimed(1))
    running.admit(first)
    running.admit(second)
    assert started.ids() == ["job-0"]
    running.cancel(second, CancelReason.REQUESTED)
    assert started.ids() == ["job-0", "job-1"]  # it runs only to record the cancel
    assert second.reason is CancelReason.REQUESTED and not second.executing
    assert running.executing == 1 and running.waiting == 0


def test_an_attempt_waiting_too_long_goes_back_and_claiming_ahead_stops() -> None:
    started = Started()
    running = RunningJobs(capacity=1, prefetch=1, start=started.append)
    quick_jobs_done(running, started, 1)
    slow, ahead = running.add(claimed(0)), running.add(claimed(1))
    running.admit(slow)
    running.admit(ahead)
    ahead.queued_at -= 5.0  # it has waited five seconds behind the slow job
    running.expire_waiting(max_wait=1.0)
    assert ahead.reason is CancelReason.NOT_STARTED and started.ids() == ["job-0", "job-1"]
    running.remove(ahead)  # its release was recorded
    assert running.room == 0  # only the free slots now, and the slow job holds the one
    running.finish_execution(slow)
    running.remove(slow)
    assert running.room == 1


@pytest.mark.parametrize(("finished", "room"), [(1, 1), (30, 4)])
def test_the_prefetch_comes_back_after_enough_quick_jobs(finished: int, room: int) -> None:
    started = Started()
    running = RunningJobs(capacity=1, prefetch=3, start=started.append)
    quick_jobs_done(running, started, 1)
    waiting = running.add(claimed(0))
    blocker = running.add(claimed(1))
    running.admit(blocker)
    running.admit(waiting)
    waiting.queued_at -= 5.0
    running.expire_waiting(max_wait=1.0)
    running.remove(waiting)
    running.finish_execution(blocker)
    running.remove(blocker)
    quick_jobs_done(running, started, finished)
    # The mean moves an eighth of the way per quick job: from 1 s to under the gate
    # (PREFETCH_MAX_MEAN_RUN) takes about 23 of them.
    assert PREFETCH_MAX_MEAN_RUN == 0.05
    assert running.room == room


def test_shutdown_sends_back_what_waits_and_leaves_what_runs() -> None:
    started = Started()
    running = RunningJobs(capacity=1, prefetch=2, start=started.append)
    quick_jobs_done(running, started, 1)
    entries = [running.add(claimed(n)) for n in range(3)]
    for entry in entries:
        running.admit(entry)
    running.cancel_waiting(CancelReason.SHUTDOWN)
    assert [e.reason for e in entries] == [None, CancelReason.SHUTDOWN, CancelReason.SHUTDOWN]
    assert running.executing == 1 and running.waiting == 0


@pytest.mark.parametrize(("seconds", "ahead"), [(0.0001, 100), (0.02, 50), (0.04, 25), (0.2, 0)])
def test_how_many_are_claimed_ahead_follows_how_quick_the_jobs_are(
    seconds: float, ahead: int
) -> None:
    """As many as the slots get through in about 0.1 s, at most the prefetch; none once
    jobs hold their slots over 50 ms."""
    started = Started()
    running = RunningJobs(capacity=10, prefetch=100, start=started.append)
    for n in range(10):
        entry = running.add(claimed(n))
        running.admit(entry)
        entry.slot_at -= seconds  # it held its slot this long
        running.finish_execution(entry)
        running.remove(entry)
    assert running.room == 10 + ahead
