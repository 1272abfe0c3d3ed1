"""Which slots of a due schedule become jobs: the misfire, coalescing and overlap rules.

Pure: the ticker hands in what it read from the database (the stored next fire time, the
database's `now()`, how many of the schedule's jobs are unfinished) and writes back what
`plan_fires` returns, in one transaction.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.models import CoalescePolicy
from scheduler.triggers import Trigger, apply_jitter

#: CoalescePolicy.ALL runs at most this many slots of one backlog (the most recent).
MAX_CATCH_UP_SLOTS = 100

#: Slots stepped through one by one before jumping ahead to the recent past; keeps a
#: per-second schedule that was down for a month from costing millions of steps.
_STEP_LIMIT = 1_000


@dataclass(frozen=True)
class DueSchedule:
    """What the ticker knows about one schedule whose next fire time has come."""

    schedule_id: str
    trigger: Trigger
    next_fire_time: datetime
    coalesce: CoalescePolicy
    misfire_grace_time: float | None
    max_running: int | None
    unfinished_jobs: int
    jitter: float


@dataclass(frozen=True)
class Fire:
    fire_time: datetime  # the slot (unique per schedule)
    run_at: datetime  # when its job is due: the slot plus any jitter


@dataclass(frozen=True)
class FirePlan:
    fires: list[Fire]
    next_fire_time: datetime | None  # None: the trigger is exhausted
    dropped: int  # due slots not run (coalesced, skipped, too late or over max_running)


def plan_fires(schedule: DueSchedule, now: datetime, rng: random.Random | None = None) -> FirePlan:
    """Decide the jobs for every slot of `schedule` due at or before `now`."""
    keep = MAX_CATCH_UP_SLOTS if schedule.coalesce is CoalescePolicy.ALL else 1
    due, due_count = _due_slots(schedule.trigger, schedule.next_fire_time, now, keep)
    next_fire = schedule.trigger.next_fire_time(now)

    if due_count > 1 and schedule.coalesce is CoalescePolicy.SKIP:
        chosen: list[datetime] = []
    else:
        chosen = list(due)
    if schedule.misfire_grace_time is not None:
        grace = timedelta(seconds=schedule.misfire_grace_time)
        chosen = [slot for slot in chosen if now - slot <= grace]
    if schedule.max_running is not None:
        room = max(0, schedule.max_running - schedule.unfinished_jobs)
        chosen = chosen[len(chosen) - room :] if room else []

    jitter = timedelta(seconds=schedule.jitter)
    fires = []
    for index, slot in enumerate(chosen):
        following = chosen[index + 1] if index + 1 < len(chosen) else next_fire
        run_at = apply_jitter(slot, following, jitter, rng) if jitter else slot
        fires.append(Fire(fire_time=slot, run_at=run_at))
    return FirePlan(fires=fires, next_fire_time=next_fire, dropped=due_count - len(fires))


def _due_slots(
    trigger: Trigger, first: datetime, now: datetime, keep: int
) -> tuple[deque[datetime], int]:
    """The last `keep` slots from `first` (itself a slot) up to `now`, and how many slots
    there were in all (a lower bound once the walk jumped ahead)."""
    slots: deque[datetime] = deque(maxlen=keep)
    count = 0
    slot: datetime | None = first
    while slot is not None and slot <= now:
        slots.append(slot)
        count += 1
        slot = trigger.next_fire_time(slot)
        if count == _STEP_LIMIT and slot is not None and slot <= now:
            period = (slot - first) / count
            jump_to = _slot_near(trigger, now, window=period * (keep + 1), floor=slot)
            if jump_to is not None and jump_to > slot:
                slots.clear()  # the slots walked so far are older than the ones jumped to
                slot = jump_to
    return slots, count


def _slot_near(
    trigger: Trigger, now: datetime, *, window: timedelta, floor: datetime
) -> datetime | None:
    """The first slot in `(now - window, now]`, widening the window until it holds one
    (never reaching back before `floor`)."""
    window = max(window, timedelta(microseconds=1))
    while now - window > floor:
        candidate = trigger.next_fire_time(now - window)
        if candidate is None or candidate <= now:
            return candidate
        window *= 2
    return floor
