"""How recurring schedules fire, in one place and pure: the first fire time of a new
schedule, the next one on resume, decoding a stored schedule, the id of a slot's job, and
which slots of a due schedule become jobs (the misfire, coalescing and overlap rules).

The store only runs the SQL: in one transaction it reads the due schedules (the stored
next fire time, the database's `now()`, how many of each one's jobs are unfinished) and
writes back the `FiringPass` that `plan_firing` returns.
"""

from __future__ import annotations

import json
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from scheduler.errors import InvalidTriggerError
from scheduler.models import CoalescePolicy
from scheduler.triggers import Trigger, apply_jitter, trigger_from_json

logger = logging.getLogger("scheduler.recurring")

#: CoalescePolicy.ALL runs at most this many slots of one backlog (the most recent).
MAX_CATCH_UP_SLOTS = 100

#: Slots stepped through one by one before jumping ahead to the recent past; keeps a
#: per-second schedule that was down for a month from costing millions of steps.
_STEP_LIMIT = 1_000


def first_fire_time(
    schedule_id: str, trigger_json: Mapping[str, Any]
) -> Callable[[datetime], datetime]:
    """The first slot of a new schedule after the database's `now()`; one that never fires
    is refused."""
    trigger = trigger_from_json(dict(trigger_json))

    def first_after(now: datetime) -> datetime:
        first = trigger.next_fire_time(now)
        if first is None:
            raise InvalidTriggerError(
                f"schedule {schedule_id!r} would never fire: its trigger {trigger!r}"
                " has no fire time after now"
            )
        return first

    return first_after


def resume_fire_time(stored_trigger: str, now: datetime) -> datetime | None:
    """Where a resumed schedule fires next: the first slot after `now` (slots that passed
    while it was paused do not run). None: the trigger is exhausted."""
    return decode_trigger(stored_trigger).next_fire_time(now)


@dataclass(frozen=True)
class FirstFire:
    """A schedule added by SQL, planned: its first fire time, or why it cannot fire."""

    schedule_id: str
    next_fire_time: datetime | None
    error: str | None = None


def plan_first_fires(unplanned: Sequence[tuple[str, str]], now: datetime) -> list[FirstFire]:
    """First fire times of schedules added by SQL (id, stored trigger), from the database
    clock. SQL checks what it can; a trigger Python cannot build (an expression croniter
    refuses, a zone zoneinfo lacks) gets its reason instead, and the schedule is paused."""
    planned = []
    for schedule_id, stored_trigger in unplanned:
        try:
            planned.append(
                FirstFire(schedule_id, decode_trigger(stored_trigger).next_fire_time(now))
            )
        except Exception as exc:
            reason = f"cannot build its trigger: {exc}"
            logger.error("pausing schedule %s added by SQL: %s", schedule_id, reason)
            planned.append(FirstFire(schedule_id, None, reason))
    return planned


def decode_trigger(stored_trigger: str) -> Trigger:
    """A trigger from its stored form (the JSON text of `Trigger.to_json()`)."""
    return trigger_from_json(json.loads(stored_trigger))


def slot_job_id(schedule_id: str, fire_time: datetime) -> str:
    """The id of the job a schedule fires for one slot: readable, and the same on every
    replica (a second insert of the slot is a no-op)."""
    return f"{schedule_id}@{fire_time.astimezone(timezone.utc).isoformat()}"


@dataclass(frozen=True)
class StoredDueSchedule:
    """A due schedule as the store reads it: trigger and policy still in stored form."""

    schedule_id: str
    trigger: str  # JSON text
    next_fire_time: datetime
    coalesce: str
    misfire_grace_time: float | None
    max_running: int | None
    unfinished_jobs: int
    jitter: float


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


@dataclass(frozen=True)
class SlotJob:
    """The job of one fired slot (it copies the schedule's task and options)."""

    job_id: str
    schedule_id: str
    fire_time: datetime
    run_at: datetime


@dataclass(frozen=True)
class Advance:
    """Where a fired schedule goes next."""

    schedule_id: str
    next_fire_time: datetime | None  # None: the trigger is exhausted
    last_fire_time: datetime | None  # None: no slot ran this time (keep the stored one)


@dataclass(frozen=True)
class FiringPass:
    """What one firing transaction writes."""

    jobs: list[SlotJob]
    advances: list[Advance]
    unreadable: list[str]  # schedules to pause: this code cannot read or fire them
    reasons: dict[str, str] = field(default_factory=dict)  # why, per unreadable schedule


def decode_due_schedule(stored: StoredDueSchedule) -> DueSchedule:
    return DueSchedule(
        schedule_id=stored.schedule_id,
        trigger=decode_trigger(stored.trigger),
        next_fire_time=stored.next_fire_time,
        coalesce=CoalescePolicy(stored.coalesce),
        misfire_grace_time=stored.misfire_grace_time,
        max_running=stored.max_running,
        unfinished_jobs=stored.unfinished_jobs,
        jitter=stored.jitter,
    )


def plan_firing(
    due: Sequence[StoredDueSchedule], now: datetime, rng: random.Random | None = None
) -> FiringPass:
    """The jobs and the advances for the due schedules read in one transaction; a schedule
    whose trigger cannot be read (corrupt, or written by newer code) or whose numbers cannot
    be computed with (a jitter or grace no datetime holds, written by hand or by SQL before
    migration 0011) is paused with the reason instead, so the ticker neither spins on it nor
    stops firing the others."""
    firing = FiringPass(jobs=[], advances=[], unreadable=[])
    for stored in due:
        schedule_id = stored.schedule_id
        try:
            schedule = decode_due_schedule(stored)
            plan = plan_fires(schedule, now, rng)
        except Exception as exc:
            logger.error(
                "pausing schedule %s: its trigger or settings are unreadable (%r)",
                schedule_id,
                exc,
            )
            firing.unreadable.append(schedule_id)
            firing.reasons[schedule_id] = f"paused: cannot fire ({exc!r})"
            continue
        firing.jobs.extend(
            SlotJob(slot_job_id(schedule_id, f.fire_time), schedule_id, f.fire_time, f.run_at)
            for f in plan.fires
        )
        if plan.dropped:
            logger.info(
                "schedule %s: %d due slot(s) not run (coalesce=%s, max_running=%s,"
                " misfire_grace_time=%s)",
                schedule_id,
                plan.dropped,
                schedule.coalesce.value,
                schedule.max_running,
                schedule.misfire_grace_time,
            )
        last = plan.fires[-1].fire_time if plan.fires else None
        firing.advances.append(Advance(schedule_id, plan.next_fire_time, last))
    return firing


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
