from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.errors import InvalidTriggerError
from scheduler.triggers import (
    AndTrigger,
    CalendarIntervalTrigger,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    OrTrigger,
    Trigger,
    apply_jitter,
    trigger_from_json,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")


def fires(trigger: Trigger, after: datetime, count: int) -> list[datetime]:
    times = []
    for _ in range(count):
        nxt = trigger.next_fire_time(after)
        assert nxt is not None
        times.append(nxt)
        after = nxt
    return times


def test_a_date_trigger_fires_once() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    trigger = DateTrigger(at)
    assert trigger.next_fire_time(at - timedelta(seconds=1)) == at
    assert trigger.next_fire_time(at) is None


def test_intervals_count_elapsed_time_on_a_fixed_grid() -> None:
    start = datetime(2024, 3, 10, 5, 0, tzinfo=UTC)  # spans New York's spring forward
    trigger = IntervalTrigger(hours=1, start=start, end=start + timedelta(hours=3))
    assert trigger.next_fire_time(start - timedelta(days=1)) == start
    assert fires(trigger, start, 3) == [start + timedelta(hours=n) for n in (1, 2, 3)]
    assert trigger.next_fire_time(start + timedelta(hours=3)) is None
    every_five = IntervalTrigger(minutes=5)  # anchored at the epoch: same on every replica
    assert every_five.next_fire_time(datetime(2024, 1, 1, 0, 3, tzinfo=UTC)) == datetime(
        2024, 1, 1, 0, 5, tzinfo=UTC
    )


def test_the_autumn_repeated_hour_fires_a_daily_job_once() -> None:
    trigger = CronTrigger("30 1 * * *", "America/New_York")
    times = fires(trigger, datetime(2024, 11, 2, 12, tzinfo=UTC), 3)
    assert [t.astimezone(NY).strftime("%m-%d %H:%M %Z") for t in times] == [
        "11-03 01:30 EDT",
        "11-04 01:30 EST",
        "11-05 01:30 EST",
    ]


def test_a_wall_time_in_the_spring_gap_fires_shifted_by_the_gap() -> None:
    trigger = CronTrigger("30 2 * * *", "America/New_York")
    times = fires(trigger, datetime(2024, 3, 9, 12, tzinfo=UTC), 3)
    assert [t.astimezone(NY).strftime("%m-%d %H:%M %Z") for t in times] == [
        "03-10 03:30 EDT",
        "03-11 02:30 EDT",
        "03-12 02:30 EDT",
    ]


def test_gap_slots_merge_with_the_slots_they_land_on() -> None:
    trigger = CronTrigger("0,30 2,3 * * *", "America/New_York")
    times = fires(trigger, datetime(2024, 3, 10, 6, 59, tzinfo=UTC), 2)
    assert [t.astimezone(NY).strftime("%H:%M %Z") for t in times] == ["03:00 EDT", "03:30 EDT"]


def test_a_one_value_range_means_that_value() -> None:
    # croniter reads "1-1" as "*"; the trigger must not fire on a Sunday for "Mondays".
    sunday = datetime(2023, 3, 12, 1, 0, tzinfo=UTC)
    for expression in ("* * * * 1-1", "* * * * mon-MON", "5-5 * * * *"):
        fire = CronTrigger(expression).next_fire_time(sunday)
        assert fire is not None and fire == CronTrigger(
            expression.replace("1-1", "1").replace("mon-MON", "mon").replace("5-5", "5")
        ).next_fire_time(sunday)
    assert CronTrigger("* * * * 1-1").expression == "* * * * 1"


def test_six_fields_put_seconds_first() -> None:
    trigger = CronTrigger("*/10 * * * * *")
    start = datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert [t.second for t in fires(trigger, start, 3)] == [10, 20, 30]


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: CronTrigger("61 * * * *"), "invalid cron"),
        (lambda: CronTrigger("* * *"), "5 fields"),
        (lambda: CronTrigger("0 0 30 2 *"), "never fires"),
        (lambda: CronTrigger("0 * * * *", "Mars/Olympus_Mons"), "unknown time zone"),
        (lambda: IntervalTrigger(), "positive interval"),
        (lambda: IntervalTrigger(minutes=1, start=datetime(2030, 1, 1)), "timezone-aware"),
        (
            lambda: IntervalTrigger(
                minutes=1,
                start=datetime(2030, 1, 1, tzinfo=UTC),
                end=datetime(2029, 1, 1, tzinfo=UTC),
            ),
            "never fire",
        ),
        (lambda: DateTrigger(datetime(2030, 1, 1)), "timezone-aware"),
    ],
)
def test_invalid_triggers_are_refused_when_defined(build: object, fragment: str) -> None:
    with pytest.raises(InvalidTriggerError, match=fragment):
        build()  # type: ignore[operator]


# -- property: croniter + our DST handling against an independent brute force ---------

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Europe/London",
    "UTC",
]


@cache
def transitions(zone: str) -> list[datetime]:
    """Instants in 2023-2025 where the zone's UTC offset changes (found hourly)."""
    tz, found = ZoneInfo(zone), []
    t = datetime(2023, 1, 1, tzinfo=UTC)
    while t.year < 2026:
        if t.astimezone(tz).utcoffset() != (t + timedelta(hours=1)).astimezone(tz).utcoffset():
            found.append(t)
        t += timedelta(hours=1)
    return found or [datetime(2024, 6, 1, tzinfo=UTC)]


def field(lo: int, hi: int) -> st.SearchStrategy[str]:
    value = st.integers(lo, hi)
    return st.one_of(
        st.just("*"),
        st.integers(2, max(2, (hi - lo) // 2)).map(lambda k: f"*/{k}"),
        value.map(str),
        st.tuples(value, value).map(lambda p: f"{min(p)},{max(p)}"),
        st.tuples(value, value).map(lambda p: f"{min(p)}-{max(p)}"),
    )


def allowed(spec: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        if part == "*":
            values |= set(range(lo, hi + 1))
        elif part.startswith("*/"):
            values |= set(range(lo, hi + 1, int(part[2:])))
        elif "-" in part:
            a, b = map(int, part.split("-"))
            values |= set(range(a, b + 1))
        else:
            values.add(int(part))
    return values


def brute_force_next(
    minute: str, hour: str, weekday: str, zone: str, after: datetime
) -> datetime | None:
    """Every wall minute in a window, mapped to its first occurrence; the earliest instant
    after `after`. Written from the documented semantics, without croniter."""
    tz = ZoneInfo(zone)
    minutes, hours = allowed(minute, 0, 59), allowed(hour, 0, 23)
    weekdays = allowed(weekday, 0, 6)
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    wall -= timedelta(hours=3)
    best = None
    for step in range(60 * 24 * 8 + 60 * 6):
        w = wall + timedelta(minutes=step)
        if w.minute in minutes and w.hour in hours and (w.weekday() + 1) % 7 in weekdays:
            instant = w.replace(tzinfo=tz).astimezone(UTC)  # compare instants, not walls
            if instant > after and (best is None or instant < best):
                best = instant
    return best


instants = st.one_of(
    st.datetimes(datetime(2023, 1, 1), datetime(2025, 12, 1)).map(lambda d: d.replace(tzinfo=UTC)),
    st.tuples(st.sampled_from(ZONES), st.integers(0, 40), st.integers(-4 * 60, 4 * 60)).map(
        lambda z: transitions(z[0])[z[1] % len(transitions(z[0]))] + timedelta(minutes=z[2])
    ),
)


@settings(deadline=None)
@given(
    minute=field(0, 59),
    hour=field(0, 23),
    weekday=field(0, 6),
    zone=st.sampled_from(ZONES),
    after=instants,
)
def test_cron_next_fire_time_matches_a_brute_force_evaluation(
    minute: str, hour: str, weekday: str, zone: str, after: datetime
) -> None:
    trigger = CronTrigger(f"{minute} {hour} * * {weekday}", zone)
    assert trigger.next_fire_time(after) == brute_force_next(minute, hour, weekday, zone, after)


# -- calendar intervals, combinations, jitter, storage --------------------------------


def test_monthly_on_the_31st_clamps_each_month_from_the_start_date() -> None:
    trigger = CalendarIntervalTrigger(
        months=1, hour=9, start_date=date(2024, 1, 31), timezone="Europe/Berlin"
    )
    times = fires(trigger, datetime(2024, 1, 1, tzinfo=UTC), 4)
    berlin = ZoneInfo("Europe/Berlin")
    assert [t.astimezone(berlin).strftime("%m-%d %H:%M") for t in times] == [
        "01-31 09:00",
        "02-29 09:00",
        "03-31 09:00",
        "04-30 09:00",
    ]


def test_calendar_days_keep_the_wall_clock_time_across_dst() -> None:
    trigger = CalendarIntervalTrigger(
        days=1,
        hour=8,
        start_date=date(2024, 3, 9),
        end_date=date(2024, 3, 11),
        timezone="America/New_York",
    )
    times = fires(trigger, datetime(2024, 3, 1, tzinfo=UTC), 3)
    assert [t.astimezone(NY).hour for t in times] == [8, 8, 8]
    assert times[2] - times[1] == timedelta(hours=24)
    assert times[1] - times[0] == timedelta(hours=23)  # the spring-forward day is short
    assert trigger.next_fire_time(times[2]) is None


def test_and_fires_where_all_agree_and_refuses_what_never_agrees() -> None:
    weekdays_at_nine = CronTrigger("0 9 * * 1-5")
    every_three_hours = IntervalTrigger(hours=3)
    both = AndTrigger([weekdays_at_nine, every_three_hours])
    fire = both.next_fire_time(datetime(2024, 6, 1, tzinfo=UTC))  # a Saturday
    assert fire == datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    with pytest.raises(InvalidTriggerError, match="never fire at the same instant"):
        AndTrigger([CronTrigger("0 0 * * 1"), CronTrigger("0 0 * * 2")])


def test_or_fires_at_the_earliest_of_its_triggers() -> None:
    either = OrTrigger([CronTrigger("0 12 * * *"), CronTrigger("30 6 * * *")])
    start = datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
    assert fires(either, start, 3) == [
        datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 6, 2, 6, 30, tzinfo=UTC),
        datetime(2024, 6, 2, 12, 0, tzinfo=UTC),
    ]


def test_jitter_never_reaches_the_next_fire() -> None:
    fire = datetime(2024, 1, 1, tzinfo=UTC)
    rng = random.Random(3)
    delays = [
        apply_jitter(fire, fire + timedelta(seconds=10), timedelta(minutes=5), rng) - fire
        for _ in range(200)
    ]
    assert all(timedelta(0) <= d <= timedelta(seconds=5) for d in delays)
    assert max(delays) > timedelta(seconds=3)
    assert apply_jitter(fire, None, timedelta(0)) == fire


def test_every_trigger_survives_a_json_round_trip() -> None:
    triggers: list[Trigger] = [
        DateTrigger(datetime(2030, 1, 1, tzinfo=UTC)),
        IntervalTrigger(minutes=7, start=datetime(2024, 1, 1, tzinfo=UTC)),
        CronTrigger("*/5 9-17 * * 1-5", "Europe/Berlin"),
        CalendarIntervalTrigger(months=1, hour=6, start_date=date(2024, 1, 31)),
        OrTrigger([CronTrigger("0 12 * * *"), IntervalTrigger(hours=5)]),
        AndTrigger([CronTrigger("0 9 * * 1-5"), IntervalTrigger(hours=3)]),
    ]
    after = datetime(2024, 5, 5, 5, 5, tzinfo=UTC)
    for trigger in triggers:
        restored = trigger_from_json(trigger.to_json())
        assert restored.to_json() == trigger.to_json()
        assert restored.next_fire_time(after) == trigger.next_fire_time(after)
    with pytest.raises(InvalidTriggerError, match="unknown trigger type"):
        trigger_from_json({"type": "lunar"})


@pytest.mark.parametrize(
    "units",
    [
        {"seconds": float("nan")},
        {"seconds": float("inf")},
        {"minutes": float("-inf")},
        {"weeks": 10**30},
        {"hours": "1"},
        {"days": True},
    ],
)
def test_interval_units_must_be_finite_numbers(units: dict[str, Any]) -> None:
    with pytest.raises(InvalidTriggerError):
        IntervalTrigger(**units)


def test_a_trigger_whose_next_fire_is_past_the_year_9999_is_exhausted() -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    # ~997 years, just under the bound of 1000: from 9990 the next slot is past 9999.
    assert (
        IntervalTrigger(weeks=52_000).next_fire_time(datetime(9990, 1, 1, tzinfo=timezone.utc))
        is None
    )
    yearly = CalendarIntervalTrigger(years=5000, start_date=date(2000, 1, 1))
    assert yearly.next_fire_time(now) == datetime(7000, 1, 1, tzinfo=timezone.utc)
    assert yearly.next_fire_time(datetime(7000, 1, 1, tzinfo=timezone.utc)) is None


def test_calendar_interval_start_date_must_be_a_date() -> None:
    with pytest.raises(TypeError, match="start_date"):
        CalendarIntervalTrigger(days=1)  # type: ignore[call-arg]
    for bad in (datetime(2024, 1, 1), "2024-01-01"):
        with pytest.raises(InvalidTriggerError, match="start_date"):
            CalendarIntervalTrigger(days=1, start_date=bad)  # type: ignore[arg-type]
