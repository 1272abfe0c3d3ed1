"""The dashboard's own error: a request it cannot serve as given (a bad filter, cursor or
action target). Shown to the operator as a 400 page with the message; nothing is written."""

from __future__ import annotations

from scheduler.errors import SchedulerError


class DashboardInputError(SchedulerError, ValueError):
    """A dashboard request names something invalid; the message says what to change."""
