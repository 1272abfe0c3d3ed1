"""The recurring firing rules: which due slots of a schedule become jobs (misfires,
coalescing, overlap), what one firing pass writes, first and resumed fire times."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from scheduler import (
    CoalescePolicy,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    InvalidTriggerError,
)
from scheduler.recurring import (
    MAX_CATCH_UP_SLOTS,
    Advance,
    DueSchedule,
    SlotJob,
    StoredDueSchedule,
    first_fire_time,
    plan_fires,
    plan_firing,
    resume_fire_time,
)
from scheduler.triggers import Trigger

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def due(
    trigger: Trigger,
    next_fire_time: datetime = T0,
    *,
    coalesce: CoalescePolicy = CoalescePolicy.LATEST,
    misfire_grace_time: float | None = None,
    max_running: int | None = None,
    unfinished_jobs: int = 0,
    jitter: float = 0.0,
) -> DueSchedule:
    return DueSchedule(
        schedule_id="s",
        trigger=trigger,
        next_fire_time=next_fire_time,
        coalesce=coalesce,
        misfire_grace_time=misfire_grace_time,
        max_running=max_running,
        unfinished_jobs=unfinished_jobs,
        jitter=jitter,
    )


EVERY_MINUTE = IntervalTrigger(minutes=1)


def test_a_slot_on_time_fires_once_and_the_schedule_moves_to_the_next_slot() -> None:
    plan = plan_fires(due(EVERY_MINUTE), T0 + timedelta(milliseconds=3))
    assert [f.fire_time for f in plan.fires] == [T0]
    assert plan.fires[0].run_at == T0
    assert (plan.next_fire_time, plan.dropped) == (T0 + MINUTE, 0)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (CoalescePolicy.LATEST, [T0 + 3 * MINUTE]),
        (CoalescePolicy.ALL, [T0 + k * MINUTE for k in range(4)]),
        (CoalescePolicy.SKIP, []),
    ],
)
def test_a_schedule_that_fell_behind_applies_its_coalesce_policy(
    policy: CoalescePolicy, expected: list[datetime]
) -> None:
    now = T0 + 3 * MINUTE + timedelta(seconds=20)  # slots 12:00 .. 12:03 are all due
    plan = plan_fires(due(EVERY_MINUTE, coalesce=policy), now)
    assert [f.fire_time for f in plan.fires] == expected
    assert plan.dropped == 4 - len(expected)
    assert plan.next_fire_time == T0 + 4 * MINUTE


def test_a_single_late_slot_runs_under_every_policy_unless_past_the_grace_time() -> None:
    now = T0 + timedelta(seconds=30)
    for policy in CoalescePolicy:
        assert [f.fire_time for f in plan_fires(due(EVERY_MINUTE, coalesce=policy), now).fires] == [
            T0
        ]
    assert plan_fires(due(EVERY_MINUTE, misfire_grace_time=29.9), now).fires == []
    assert len(plan_fires(due(EVERY_MINUTE, misfire_grace_time=30), now).fires) == 1


def test_the_grace_time_drops_only_the_slots_that_are_too_late() -> None:
    now = T0 + 3 * MINUTE + timedelta(seconds=20)
    plan = plan_fires(due(EVERY_MINUTE, coalesce=CoalescePolicy.ALL, misfire_grace_time=90), now)
    assert [f.fire_time for f in plan.fires] == [T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    assert plan.dropped == 2


def test_max_running_skips_slots_while_that_many_jobs_are_unfinished() -> None:
    now = T0 + timedelta(seconds=1)
    assert plan_fires(due(EVERY_MINUTE, max_running=1, unfinished_jobs=1), now).fires == []
    assert len(plan_fires(due(EVERY_MINUTE, max_running=2, unfinished_jobs=1), now).fires) == 1
    assert len(plan_fires(due(EVERY_MINUTE, max_running=None, unfinished_jobs=50), now).fires) == 1
    # Catching up counts its own new jobs: the most recent slots win.
    behind = T0 + 3 * MINUTE
    plan = plan_fires(due(EVERY_MINUTE, coalesce=CoalescePolicy.ALL, max_running=2), behind)
    assert [f.fire_time for f in plan.fires] == [T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    # A skipped slot is gone for good: the schedule still moves on.
    assert plan.next_fire_time == T0 + 4 * MINUTE


def test_jitter_delays_a_job_but_never_to_its_next_slot() -> None:
    rng = random.Random(7)
    runs = [plan_fires(due(EVERY_MINUTE, jitter=3600), T0, rng).fires[0].run_at for _ in range(200)]
    assert all(T0 <= run_at < T0 + MINUTE for run_at in runs)
    assert len(set(runs)) > 100
    for fire in plan_fires(
        due(EVERY_MINUTE, coalesce=CoalescePolicy.ALL, jitter=10), T0 + 2 * MINUTE, rng
    ).fires:
        assert fire.fire_time <= fire.run_at <= fire.fire_time + timedelta(seconds=10)


def test_an_exhausted_trigger_fires_its_last_slot_and_stops() -> None:
    plan = plan_fires(due(DateTrigger(T0)), T0 + timedelta(seconds=1))
    assert [f.fire_time for f in plan.fires] == [T0]
    assert plan.next_fire_time is None


@pytest.mark.parametrize("policy", list(CoalescePolicy))
def test_a_month_of_per_second_backlog_is_planned_quickly_and_exactly(
    policy: CoalescePolicy,
) -> None:
    every_second = CountingTrigger(CronTrigger("* * * * * *"))
    now = T0 + timedelta(days=30, microseconds=500)
    plan = plan_fires(due(every_second, coalesce=policy), now)
    latest = T0 + timedelta(days=30)
    expected = {
        CoalescePolicy.LATEST: [latest],
        CoalescePolicy.ALL: [
            latest - timedelta(seconds=k) for k in reversed(range(MAX_CATCH_UP_SLOTS))
        ],
        CoalescePolicy.SKIP: [],
    }[policy]
    assert [f.fire_time for f in plan.fires] == expected
    assert plan.next_fire_time == latest + timedelta(seconds=1)
    assert plan.dropped >= 1_000  # a lower bound once the walk jumped ahead
    assert every_second.calls < 2_000, "no walk through 2.6 million slots"


class CountingTrigger:
    def __init__(self, inner: Trigger) -> None:
        self.inner = inner
        self.calls = 0

    def next_fire_time(self, after: datetime) -> datetime | None:
        self.calls += 1
        return self.inner.next_fire_time(after)

    def to_json(self) -> dict[str, Any]:
        return self.inner.to_json()


def stored(schedule_id: str, trigger: str, coalesce: str = "latest") -> StoredDueSchedule:
    return StoredDueSchedule(
        schedule_id=schedule_id,
        trigger=trigger,
        next_fire_time=T0,
        coalesce=coalesce,
        misfire_grace_time=None,
        max_running=None,
        unfinished_jobs=0,
        jitter=0.0,
    )


def test_a_firing_pass_writes_one_job_per_slot_and_pauses_unreadable_schedules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    minutely = json.dumps(EVERY_MINUTE.to_json())
    now = T0 + 2 * MINUTE
    firing = plan_firing(
        [
            stored("all", minutely, coalesce="all"),
            stored("lunar", json.dumps({"type": "lunar"})),
            stored("bad-policy", minutely, coalesce="earliest"),
            stored("latest", minutely),
        ],
        now,
    )
    assert firing.jobs == [
        SlotJob(f"all@{slot.isoformat()}", "all", slot, slot)
        for slot in (T0, T0 + MINUTE, T0 + 2 * MINUTE)
    ] + [SlotJob(f"latest@{now.isoformat()}", "latest", now, now)]
    assert firing.advances == [
        Advance("all", now + MINUTE, now),
        Advance("latest", now + MINUTE, now),
    ]
    assert firing.unreadable == ["lunar", "bad-policy"]
    assert [r.levelno for r in caplog.records if "unreadable" in r.getMessage()] == [
        logging.ERROR
    ] * 2


def test_a_new_schedule_starts_at_its_first_slot_after_now_and_must_have_one() -> None:
    assert first_fire_time("s", EVERY_MINUTE.to_json())(T0 + timedelta(seconds=1)) == T0 + MINUTE
    with pytest.raises(InvalidTriggerError, match="'s' would never fire"):
        first_fire_time("s", DateTrigger(T0).to_json())(T0)


def test_a_resumed_schedule_skips_the_slots_passed_while_paused() -> None:
    minutely = json.dumps(EVERY_MINUTE.to_json())
    assert resume_fire_time(minutely, T0 + 90 * MINUTE + timedelta(seconds=1)) == T0 + 91 * MINUTE
    assert resume_fire_time(json.dumps(DateTrigger(T0).to_json()), T0) is None  # exhausted


@pytest.mark.parametrize(
    ("jitter", "grace"), [(1e300, None), (math.inf, None), (math.nan, None), (0.0, math.nan)]
)
def test_a_schedule_with_numbers_no_datetime_holds_is_paused_with_the_reason(
    jitter: float, grace: float | None
) -> None:
    """Issue 19: a row written by hand (or by SQL before migration 0011) whose jitter or
    grace overflows a timedelta pauses that schedule only; the others fire."""
    minutely = json.dumps(EVERY_MINUTE.to_json())
    now = T0 + 2 * MINUTE
    bad = dataclasses.replace(stored("bad", minutely), jitter=jitter, misfire_grace_time=grace)
    firing = plan_firing([bad, stored("good", minutely)], now)
    assert firing.unreadable == ["bad"]
    assert "cannot fire" in firing.reasons["bad"]
    assert [job.schedule_id for job in firing.jobs] == ["good"]
