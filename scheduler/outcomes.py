"""How an attempt ended, as the runner records it and the observers report it (pure).

Here rather than in the runner so that observing.py, which the runner uses, can read them
without importing the runner. Each outcome says how the store records it (`ending`): a new
outcome is a class here, its `AttemptOutcome` name and its row in the SQL function
`end_attempts` (scheduler/postgres/functions/end_attempts.sql)."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.error_text import ErrorParts
from scheduler.models import AttemptOutcome
from scheduler.running_jobs import CancelReason
from scheduler.store import AttemptEnd, Lease


@dataclass(frozen=True)
class Succeeded:
    result_json: str | None = None

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        return AttemptEnd(lease, AttemptOutcome.SUCCEEDED, result_json=self.result_json)


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


@dataclass(frozen=True)
class Snoozed:
    delay: float

    def ending(self, lease: Lease, retry_delay: float) -> AttemptEnd:
        return AttemptEnd(lease, AttemptOutcome.SNOOZED, delay=self.delay)


Outcome = Succeeded | Failed | Interrupted | Snoozed
