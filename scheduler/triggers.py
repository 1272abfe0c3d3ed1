"""Triggers: when a recurring schedule fires. Pure: no I/O and no clock; every method is
given the instant to compute from, and every instant is timezone-aware.

`next_fire_time(after)` returns the first fire time strictly after `after`, or None when
the trigger is exhausted. Wall-clock semantics (cron) are documented on `CronTrigger`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from scheduler.errors import InvalidTriggerError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Trigger(Protocol):
    def next_fire_time(self, after: datetime) -> datetime | None: ...


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
        self.interval = timedelta(
            weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        if self.interval <= timedelta(0):
            raise InvalidTriggerError("an interval trigger needs a positive interval")
        self.start = _require_aware(start, "start") if start is not None else None
        self.end = _require_aware(end, "end") if end is not None else None
        if self.end is not None and self.end < (self.start or EPOCH):
            raise InvalidTriggerError("end is before start: the trigger would never fire")

    def next_fire_time(self, after: datetime) -> datetime | None:
        anchor = self.start or EPOCH
        if after < anchor:
            candidate = anchor
        else:
            candidate = anchor + ((after - anchor) // self.interval + 1) * self.interval
        if self.end is not None and candidate > self.end:
            return None
        return candidate

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


class CronTrigger:
    """Fires when the wall clock of `timezone` matches a cron expression.

    Five fields (minute hour day-of-month month day-of-week), or six with seconds first
    (``*/10 * * * * *`` = every ten seconds). Wall-clock semantics across DST:

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
            raise InvalidTriggerError(f"invalid cron expression {expression!r}: {exc}") from None
        # An expression such as "0 0 30 2 *" (February 30th) parses but never fires.
        if self.next_fire_time(datetime(2000, 1, 1, tzinfo=self._zone)) is None:
            raise InvalidTriggerError(f"cron expression {expression!r} never fires")

    def _candidates(self, start: datetime) -> croniter:
        return croniter(self.expression, start, second_at_beginning=self._with_seconds)

    def _instant(self, wall: datetime) -> datetime:
        # fold=0: the first occurrence of a repeated wall time, and the pre-transition
        # offset for one in a gap (so it moves forward by the gap). Converted to UTC at
        # once: Python orders same-zone datetimes by wall time, not by instant.
        return wall.replace(tzinfo=self._zone).astimezone(timezone.utc)

    def next_fire_time(self, after: datetime) -> datetime | None:
        wall_after = after.astimezone(self._zone).replace(tzinfo=None)
        try:
            candidates = self._candidates(wall_after)
            while True:
                wall: datetime = candidates.get_next(datetime)
                fire = self._instant(wall)
                if fire > after:
                    break
            shifted_to = fire.astimezone(self._zone).replace(tzinfo=None)
            if shifted_to != wall:
                # `wall` lies in a spring-forward gap and moved later; a later wall time
                # may map to an earlier instant: take the earliest until the shift.
                while (wall := candidates.get_next(datetime)) < shifted_to:
                    fire = min(fire, self._instant(wall))
        except CroniterError:  # no match within croniter's search horizon
            return None
        return fire

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, timezone={self.timezone!r})"
