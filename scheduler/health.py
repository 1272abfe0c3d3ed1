"""`Scheduler.health`: what a readiness or liveness check should look at.

A replica can be RUNNING and still do nothing useful: when every claim fails (a revoked
privilege, a broken function, a database that refuses the statement) it heartbeats and
looks alive while due jobs wait. Once every claim has failed for longer than a lease it
says so here (and in the Prometheus gauges); the first claim that works clears it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.models import SchedulerState


@dataclass(frozen=True)
class Health:
    """A snapshot of a replica's health."""

    state: SchedulerState
    #: Seconds every claim has failed for (0: the last claim worked, or none was tried).
    claims_failing_for: float
    #: The error of the last failed claim while claims fail, else None.
    claim_error: str | None
    #: How long claims may fail before the replica reports it (its `lease_time`).
    claim_failure_limit: float

    @property
    def claiming(self) -> bool:
        """False once every claim has failed for longer than a lease."""
        return self.claims_failing_for <= self.claim_failure_limit

    @property
    def healthy(self) -> bool:
        """Running and able to claim: what a health endpoint should report as ready."""
        return self.state is SchedulerState.RUNNING and self.claiming

    def describe(self) -> str:
        if self.healthy:
            return "healthy"
        if self.state is not SchedulerState.RUNNING:
            return f"not running ({self.state.value})"
        return (
            f"every claim has failed for {self.claims_failing_for:.0f} s (longer than a lease,"
            f" {self.claim_failure_limit:g} s): {self.claim_error}"
        )
