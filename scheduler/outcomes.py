"""How an attempt ended, as the runner records it and the observers report it (pure).

Here rather than in the runner so that observing.py, which the runner uses, can read them
without importing the runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.error_text import ErrorParts
from scheduler.running_jobs import CancelReason


@dataclass(frozen=True)
class Succeeded:
    result_json: str | None = None


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


@dataclass(frozen=True)
class Interrupted:
    reason: CancelReason


@dataclass(frozen=True)
class Snoozed:
    delay: float


Outcome = Succeeded | Failed | Interrupted | Snoozed
