"""How an attempt ended, as the runner records it and the observers report it (pure).

Here rather than in the runner so that observing.py, which the runner uses, can read them
without importing the runner."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.running_jobs import CancelReason


@dataclass(frozen=True)
class Succeeded:
    result_json: str | None = None


@dataclass(frozen=True)
class Failed:
    error: str
    timed_out: bool = False


@dataclass(frozen=True)
class Interrupted:
    reason: CancelReason


@dataclass(frozen=True)
class Snoozed:
    delay: float


Outcome = Succeeded | Failed | Interrupted | Snoozed
