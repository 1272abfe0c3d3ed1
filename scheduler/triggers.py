"""Triggers: when a recurring schedule fires. Pure: no I/O and no clock; every method is
given the instant to compute from, and every instant is timezone-aware.

`next_fire_time(after)` returns the first fire time strictly after `after`, or None when
the trigger is exhausted. Wall-clock semantics (cron) are documented on `CronTrigger`.
"""

from __future__ import annotations

import calendar
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from scheduler.bounds import MAX_SECONDS, MAX_SECONDS_TEXT
from scheduler.errors import InvalidTriggerError

logger = logging.getLogger("scheduler.triggers")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Trigger(Protocol):
    def next_fire_time(self, after: datetime) -> datetime | None: ...

    def to_json(self) -> dict[str, Any]: ...


def _require_aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTriggerError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidTriggerError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'"
        ) from None


@dataclass(frozen=True)
class DateTrigger:
    """Fires once, at `run_at`."""

    run_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.run_at, "run_at")

    def next_fire_time(self, after: datetime) -> datetime | None:
        return self.run_at if self.run_at > after else None

    def to_json(self) -> dict[str, Any]:
        return {"type": "date", "run_at": self.run_at.isoformat()}


class IntervalTrigger:
    """Fires every `interval` of elapsed time (no DST effects), at start + k * interval.

    Without `start` the grid is anchored at the Unix epoch, so `minutes=5` fires on
    :00, :05, ... whichever replica computes it. `end` is inclusive.
    """

    def __init__(
        self,
        *,
        weeks: float = 0,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        units = {"weeks": weeks, "days": days, "hours": hours, "minutes": minutes}
        units["seconds"] = seconds
        for name, value in units.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidTriggerError(f"{name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidTriggerError(f"{name} must be finite, got {value!r}")
        try:
            self.interval = timedelta(**units)
        except OverflowError:
            raise InvalidTriggerError(f"the interval {units} is too long") from None
        if self.interval <= timedelta(0):
            raise InvalidTriggerError("an interval trigger needs a positive interval")
        if self.interval.total_seconds() > MAX_SECONDS:
            raise InvalidTriggerError(
                f"an interval trigger's interval must be at most {MAX_SECONDS_TEXT},"
                f" got {self.interval}"
            )
        self.start = _require_aware(start, "start") if start is not None else None
        self.end = _require_aware(end, "end") if end is not None else None
        if self.end is not None and self.end < (self.start or EPOCH):
            raise InvalidTriggerError("end is before start: the trigger would never fire")

    def next_fire_time(self, after: datetime) -> datetime | None:
        anchor = self.start or EPOCH
        if after < anchor:
            candidate = anchor
        else:
            try:
                candidate = anchor + ((after - anchor) // self.interval + 1) * self.interval
            except OverflowError:  # past the year 9999: it never fires again
                return None
        if self.end is not None and candidate > self.end:
            return None
        return candidate

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "interval",
            "seconds": self.interval.total_seconds(),
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    def __repr__(self) -> str:
        return f"IntervalTrigger(interval={self.interval}, start={self.start}, end={self.end})"


_RANGE = re.compile(r"(\w+)-(\w+)(/\d+)?")


def _collapse_single_value_ranges(cron_field: str) -> str:
    """Rewrite a range of one value ("1-1") as that value: croniter reads it as "*"."""
    parts = []
    for part in cron_field.split(","):
        match = _RANGE.fullmatch(part)
        if match and match[1].lower() == match[2].lower():
            part = match[1]
        parts.append(part)
    return ",".join(parts)


def _parses(expression: str, *, seconds_first: bool) -> bool:
    try:
        croniter(expression, datetime(2000, 1, 1), second_at_beginning=seconds_first)
    except (CroniterError, ValueError, KeyError):
        return False
    return True


def _seconds_first(fields: list[str]) -> str:
    """A croniter-style (seconds last) six-field expression in this library's order."""
    return " ".join([fields[-1], *fields[:-1]])


_NUMBERS = re.compile(r"\d+(,\d+)*")
_warned_expressions: set[str] = set()


def _warn_if_seconds_look_last(expression: str) -> None:
    """Warn (once per expression) when a six-field expression, valid either way, looks
    written seconds-last: its first field steps like minutes (``*`` or ``*/n``) and its
    last is a plain number or list, as croniter users write ``*/5 * * * * 0``."""
    fields = expression.split()
    if expression in _warned_expressions or not fields[0].startswith("*"):
        return
    if not _NUMBERS.fullmatch(fields[-1]) or not _parses(expression, seconds_first=False):
        return
    _warned_expressions.add(expression)
    logger.warning(
        "cron expression %r has six fields: read here with seconds FIRST (second minute"
        " hour day month weekday), so its last field %r is the day of the week. If you"
        " meant croniter's seconds-last order, write %r",
        expression,
        fields[-1],
        _seconds_first(fields),
    )


class CronTrigger:
    """Fires when the wall clock of `timezone` matches a cron expression.

    Five fields (minute hour day-of-month month day-of-week), or six with **seconds
    first** (``second minute hour day-of-month month day-of-week``: ``*/10 * * * * *`` is
    every ten seconds, ``30 0 9 * * 1-5`` is 09:00:30 on weekdays). Note that croniter's
    own six-field form puts the seconds *last*: a six-field expression that is only valid
    that way raises `InvalidTriggerError` with the seconds-first spelling, and one that
    reads very differently the two ways (``*/5 * * * * 0``: here every five seconds on
    Sundays; in croniter every five minutes at second 0) logs a warning once.
    Wall-clock semantics across DST:

    * each matching wall time fires once: in the autumn repeated hour a daily
      ``30 1 * * *`` fires at the first 01:30 only, and other slots of the repeated hour
      do not fire a second time;
    * a wall time skipped by a spring-forward gap fires shifted forward by the gap
      (02:30 becomes 03:30 where clocks jump from 02:00 to 03:00), merging with a slot it
      lands on.

    For "every N minutes of elapsed time" across DST use `IntervalTrigger`.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        fields = expression.split() if isinstance(expression, str) else []
        if len(fields) not in (5, 6):
            raise InvalidTriggerError(
                f"cron expression {expression!r} must have 5 fields (minute hour day month"
                " weekday) or 6 with seconds first"
            )
        self.expression = " ".join(_collapse_single_value_ranges(f) for f in fields)
        self.timezone = timezone
        self._zone = _zone(timezone)
        self._with_seconds = len(fields) == 6
        try:
            croniter(self.expression, datetime(2000, 1, 1), second_at_beginning=self._with_seconds)
        except (CroniterError, ValueError, KeyError) as exc:
            if self._with_seconds and _parses(self.expression, seconds_first=False):
                raise InvalidTriggerError(
                    f"cron expression {expression!r} is not valid with seconds first (this"
                    " library's six-field order: second minute hour day month weekday), but"
                    " is with seconds last (croniter's order). If that is what you meant,"
                    f" write {_seconds_first(fields)!r}"
                ) from None
            raise InvalidTriggerError(f"invalid cron expression {expression!r}: {exc}") from None
        if self._with_seconds:
            _warn_if_seconds_look_last(self.expression)
        # An expression such as "0 0 30 2 *" (February 30th) parses but never fires.
        if self.next_fire_time(datetime(2000, 1, 1, tzinfo=self._zone)) is None:
            raise InvalidTriggerError(f"cron expression {expression!r} never fires")

    def _candidates(self, start: datetime) -> croniter:
        return croniter(self.expression, start, second_at_beginning=self._with_seconds)

    def next_fire_time(self, after: datetime) -> datetime | None:
        wall_after = after.astimezone(self._zone).replace(tzinfo=None)
        # Just after a spring-forward gap, the wall times the gap skipped fire (shifted
        # forward by the gap) after `after` although they read earlier: start from the
        # wall clock as it would read at the offset of a day ago (gaps last at most a day).
        earlier = (after - timedelta(days=1)).astimezone(self._zone).utcoffset()
        if earlier is not None:
            utc_wall = after.astimezone(timezone.utc).replace(tzinfo=None)
            wall_after = min(wall_after, utc_wall + earlier)
        try:
            candidates = self._candidates(wall_after)
            while True:
                wall: datetime = candidates.get_next(datetime)
                fire = _wall_instant(wall, self._zone)
                if fire > after:
                    break
            shifted_to = fire.astimezone(self._zone).replace(tzinfo=None)
            if shifted_to != wall:
                # `wall` lies in a spring-forward gap and moved later; a later wall time
                # may map to an earlier instant: take the earliest until the shift.
                while (wall := candidates.get_next(datetime)) < shifted_to:
                    instant = _wall_instant(wall, self._zone)
                    if instant > after:
                        fire = min(fire, instant)
        except CroniterError:  # no match within croniter's search horizon
            return None
        return fire

    def to_json(self) -> dict[str, Any]:
        return {"type": "cron", "expression": self.expression, "timezone": self.timezone}

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, timezone={self.timezone!r})"


def _wall_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall time as an instant: fold=0 takes the first occurrence of a repeated time and
    the pre-transition offset for one in a gap (so it moves forward by the gap). In UTC at
    once, because Python orders same-zone datetimes by wall time, not by instant."""
    return wall.replace(tzinfo=zone).astimezone(timezone.utc)


class CalendarIntervalTrigger:
    """Fires every N years/months/weeks/days at a wall-clock time of `timezone`, counting
    calendar dates from `start_date`. A day that a month lacks clamps to its last day,
    each time from the start date (Jan 31 -> Feb 29 -> Mar 31). DST rules as for cron."""

    def __init__(
        self,
        *,
        years: int = 0,
        months: int = 0,
        weeks: int = 0,
        days: int = 0,
        hour: int = 0,
        minute: int = 0,
        second: int = 0,
        start_date: date,
        end_date: date | None = None,
        timezone: str = "UTC",
    ) -> None:
        counts = (years, months, weeks, days)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts) or not any(
            counts
        ):
            raise InvalidTriggerError(
                "a calendar interval needs whole, non-negative units, at least one of them positive"
            )
        try:
            self.at = time(hour, minute, second)
        except (TypeError, ValueError) as exc:
            raise InvalidTriggerError(f"invalid time of day: {exc}") from None
        for name, day in (("start_date", start_date), ("end_date", end_date)):
            if day is not None and (not isinstance(day, date) or isinstance(day, datetime)):
                raise InvalidTriggerError(
                    f"{name} must be a datetime.date (the first day counted), got {day!r}"
                )
        if end_date is not None and end_date < start_date:
            raise InvalidTriggerError("end_date is before start_date: it would never fire")
        self.months = years * 12 + months
        self.days = weeks * 7 + days
        self.start_date, self.end_date = start_date, end_date
        self.timezone = timezone
        self._zone = _zone(timezone)
        self._period_days = self.months * 30.44 + self.days

    def _date(self, k: int) -> date:
        total = self.start_date.month - 1 + k * self.months
        year, month = self.start_date.year + total // 12, total % 12 + 1
        day = min(self.start_date.day, calendar.monthrange(year, month)[1])
        return date(year, month, day) + timedelta(days=k * self.days)

    def next_fire_time(self, after: datetime) -> datetime | None:
        elapsed = (after.astimezone(self._zone).date() - self.start_date).days
        k = max(0, int(elapsed / self._period_days) - 1)
        while True:
            try:
                day = self._date(k)
            except (OverflowError, ValueError):  # past the year 9999: it never fires again
                return None
            if self.end_date is not None and day > self.end_date:
                return None
            fire = _wall_instant(datetime.combine(day, self.at), self._zone)
            if fire > after:
                return fire
            k += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "calendar",
            "months": self.months,
            "days": self.days,
            "time": self.at.isoformat(),
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "timezone": self.timezone,
        }

    def __repr__(self) -> str:
        return (
            f"CalendarIntervalTrigger(months={self.months}, days={self.days}, at={self.at},"
            f" start_date={self.start_date}, timezone={self.timezone!r})"
        )


@dataclass(frozen=True)
class UnreadableTrigger:
    """A stored trigger this code cannot rebuild (written by plain SQL, or by a newer
    release): `get_schedule()` shows it as stored; it never fires."""

    data: Any
    reason: str

    def next_fire_time(self, after: datetime) -> datetime | None:
        return None

    def to_json(self) -> dict[str, Any]:
        return self.data if isinstance(self.data, dict) else {"type": None, "data": self.data}


#: How many rounds a combined trigger searches for agreement before giving up.
COMBINATION_SEARCH_LIMIT = 10_000


class AndTrigger:
    """Fires when every one of its triggers fires at the same instant."""

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        if len(triggers) < 2:
            raise InvalidTriggerError("AndTrigger needs at least two triggers")
        self.triggers = tuple(triggers)
        if self.next_fire_time(datetime(2000, 1, 1, tzinfo=timezone.utc)) is None:
            raise InvalidTriggerError(
                f"these triggers never fire at the same instant: {self.triggers}"
            )

    def next_fire_time(self, after: datetime) -> datetime | None:
        candidate = after
        for _ in range(COMBINATION_SEARCH_LIMIT):
            fires = [t.next_fire_time(candidate) for t in self.triggers]
            if any(f is None for f in fires):
                return None
            latest = max(f for f in fires if f is not None)
            if all(f == latest for f in fires):
                return latest
            candidate = latest - timedelta(microseconds=1)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"type": "and", "triggers": [t.to_json() for t in self.triggers]}

    def __repr__(self) -> str:
        return f"AndTrigger({list(self.triggers)!r})"


class OrTrigger:
    """Fires whenever any of its triggers fires (once per instant)."""

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        if len(triggers) < 2:
            raise InvalidTriggerError("OrTrigger needs at least two triggers")
        self.triggers = tuple(triggers)

    def next_fire_time(self, after: datetime) -> datetime | None:
        fires = [f for t in self.triggers if (f := t.next_fire_time(after)) is not None]
        return min(fires, default=None)

    def to_json(self) -> dict[str, Any]:
        return {"type": "or", "triggers": [t.to_json() for t in self.triggers]}

    def __repr__(self) -> str:
        return f"OrTrigger({list(self.triggers)!r})"


#: The trigger classes a schedule can be stored with (`trigger_from_json` rebuilds them).
TRIGGER_TYPES = (
    DateTrigger,
    IntervalTrigger,
    CronTrigger,
    CalendarIntervalTrigger,
    AndTrigger,
    OrTrigger,
)


def apply_jitter(
    fire_time: datetime,
    next_fire_time: datetime | None,
    max_jitter: timedelta,
    rng: random.Random | None = None,
) -> datetime:
    """Delay a fire by up to `max_jitter`, but never to or past the next fire."""
    room = max_jitter
    if next_fire_time is not None:
        room = min(room, (next_fire_time - fire_time) / 2)
    if room <= timedelta(0):
        return fire_time
    return fire_time + (rng or random).uniform(0, 1) * room


def trigger_from_json(data: dict[str, Any]) -> Trigger:
    """Rebuild a trigger stored with `to_json()`."""
    kind = data.get("type")
    if kind == "date":
        return DateTrigger(datetime.fromisoformat(data["run_at"]))
    if kind == "interval":
        return IntervalTrigger(
            seconds=data["seconds"],
            start=datetime.fromisoformat(data["start"]) if data["start"] else None,
            end=datetime.fromisoformat(data["end"]) if data["end"] else None,
        )
    if kind == "cron":
        return CronTrigger(data["expression"], data["timezone"])
    if kind == "calendar":
        at = time.fromisoformat(data["time"])
        return CalendarIntervalTrigger(
            months=data["months"],
            days=data["days"],
            hour=at.hour,
            minute=at.minute,
            second=at.second,
            start_date=date.fromisoformat(data["start_date"]),
            end_date=date.fromisoformat(data["end_date"]) if data["end_date"] else None,
            timezone=data["timezone"],
        )
    if kind in ("and", "or"):
        parts = [trigger_from_json(part) for part in data["triggers"]]
        return AndTrigger(parts) if kind == "and" else OrTrigger(parts)
    raise InvalidTriggerError(f"unknown trigger type {kind!r}")
