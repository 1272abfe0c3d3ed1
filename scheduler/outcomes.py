"""How an attempt ended: the names the store records (`AttemptOutcome`), and one class per
way the runner sees an attempt end, which says how the store records it (`ending()`) and
what the observers hear of it (`report()`). Pure.

A new outcome is its member of `AttemptOutcome` and its class here (in `Outcome`), its
branch in the SQL function `end_attempts` (scheduler/postgres/functions/end_attempts.sql,
which decides what the job becomes, writes the history row and is the one place the
database lists the names), and their tests. No other module names an outcome: the runner
records `ending()`, observing emits `report()`, metrics label attempts by the event kind.
An outcome that reports an event kind of its own also adds that kind to `EventKind`
(events.py), the public list of what handlers can receive.

Low in the package (it imports only leaf modules), so that the models, the store port,
the runner and the observers all read it without import cycles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from scheduler.error_text import ErrorParts
from scheduler.events import EventKind
from scheduler.lease import Lease


class AttemptOutcome(str, enum.Enum):
    """How one attempt of a job ended (`Attempt.outcome`), by the name its history row
    stores."""

    SUCCEEDED = "succeeded"
    #: The job raised: spends one of `max_retries`.
    FAILED = "failed"
    #: The job ran past its timeout: spends one of `max_retries`.
    TIMED_OUT = "timed out"
    #: `cancel_job()` interrupted it.
    CANCELLED = "cancelled"
    #: Its worker stopped heartbeating; a peer's sweep took the job back (spends one of
    #: `orphan_retries`).
    LEASE_LOST = "lease lost"
    #: Its worker shut down before it finished and gave it back (spends nothing).
    RELEASED = "released"
    #: Its live worker held it without running it (a lost claim reply, an outcome it could
    #: not write) and gave it back (spends one of `orphan_retries`).
    HANDED_BACK = "handed back"
    #: The job asked to run again later (`Snooze`; spends nothing).
    SNOOZED = "snoozed"


#: Recorded by the store itself, for attempts no runner recorded: the orphan sweep (lease
#: lost) and the heartbeat's hand-back. Every other name is some class's `ending()`.
RECORDED_BY_THE_STORE = frozenset({AttemptOutcome.LEASE_LOST, AttemptOutcome.HANDED_BACK})


class CancelReason(enum.Enum):
    """Why a running attempt was stopped (the value is the text recorded with it)."""

    REQUESTED = "cancelled on request while running"
    SHUTDOWN = "released: its worker shut down before the attempt finished"
    LEASE_LOST = "its worker lost the lease"
    NOT_STARTED = "released unstarted: it waited too long for a free slot"


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt ended, as the store records it: `outcome` decides what the job
    becomes (see `end_attempts` in the PostgreSQL adapter's functions for the table)."""

    lease: Lease
    outcome: AttemptOutcome
    #: A success's return value, encoded (None: store no result).
    result_json: str | None = None
    #: The text kept as the job's last error: a traceback, or the reason for a cancel or a
    #: release (cut to `MAX_ERROR_LENGTH`).
    error: str | None = None
    #: The error's type and message (None: the store derives them from `error`).
    parts: ErrorParts | None = None
    #: Seconds until a failed attempt's retry, or until a snoozed job runs again.
    delay: float = 0.0


@dataclass(frozen=True)
class Report:
    """What the observers hear of an ended attempt: the event's kind and, for a failure,
    its error (the full text, and its type and message apart)."""

    kind: EventKind
    error: str | None = None
    parts: ErrorParts | None = None


#: An attempt whose outcome was not written (its lease was lost, or the write gave up):
#: whatever it ended as, this is what it reports.
NOT_WRITTEN = Report(EventKind.LEASE_LOST)


@dataclass(frozen=True)
class Succeeded:
    result_json: str | None = None

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        return AttemptEnd(lease, AttemptOutcome.SUCCEEDED, result_json=self.result_json)

    def report(self, retries_left: bool) -> Report:
        return Report(EventKind.SUCCEEDED)


@dataclass(frozen=True)
class Failed:
    #: The full text (a traceback for an exception), stored as `last_error`.
    error: str
    timed_out: bool = False
    #: The exception's type and message (None: derived from `error` by the database).
    parts: ErrorParts | None = None
    #: What the job raised, for the log's traceback (None for a timeout).
    exception: BaseException | None = field(default=None, compare=False)

    @property
    def summary(self) -> str:
        return str(self.parts) if self.parts is not None else self.error.split("\n", 1)[0]

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        """Spends one of max_retries: pending again after `retry_delay` while any remain."""
        outcome = AttemptOutcome.TIMED_OUT if self.timed_out else AttemptOutcome.FAILED
        return AttemptEnd(lease, outcome, error=self.error, parts=self.parts, delay=retry_delay)

    def report(self, retries_left: bool) -> Report:
        # As end_attempts decides (a cancel request arriving meanwhile aside).
        kind = EventKind.RETRIED if retries_left else EventKind.FAILED
        return Report(kind, error=self.error, parts=self.parts)


@dataclass(frozen=True)
class Interrupted:
    reason: CancelReason

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        """A requested cancel ends the job; any other stop gives the attempt back."""
        outcome = (
            AttemptOutcome.CANCELLED
            if self.reason is CancelReason.REQUESTED
            else AttemptOutcome.RELEASED
        )
        return AttemptEnd(lease, outcome, error=self.reason.value)

    def report(self, retries_left: bool) -> Report:
        return Report(_INTERRUPTIONS[self.reason])


_INTERRUPTIONS = {
    CancelReason.REQUESTED: EventKind.CANCELLED,
    CancelReason.SHUTDOWN: EventKind.RELEASED,
    CancelReason.LEASE_LOST: EventKind.LEASE_LOST,
    CancelReason.NOT_STARTED: EventKind.RELEASED,
}


@dataclass(frozen=True)
class Snoozed:
    delay: float

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        return AttemptEnd(lease, AttemptOutcome.SNOOZED, delay=self.delay)

    def report(self, retries_left: bool) -> Report:
        return Report(EventKind.SNOOZED)


#: Every way the runner sees an attempt end. `report(retries_left)`: `retries_left` says
#: whether the job had a retry left for a failure (only a failure reads it).
Outcome = Succeeded | Failed | Interrupted | Snoozed
