"""Extensions: bundles of middleware, event handlers and readings of the replica that plug
into a `Scheduler` together (`Scheduler(..., extensions=[...])`). The Prometheus metrics
(`scheduler.metrics`) and OpenTelemetry tracing (`scheduler.tracing`) are extensions; an
application may write its own. Every hook is optional: the defaults do nothing, and a
scheduler whose extensions leave a hook alone pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from scheduler.events import EventHandler
from scheduler.health import Health
from scheduler.middleware import Middleware


@dataclass(frozen=True)
class QueueDepth:
    """One queue's backlog as the database saw it: pending jobs due now, and how long the
    oldest of them has been due (seconds, database clock; 0 when none is due)."""

    queue: str
    due: int
    oldest_due_age: float


class ReplicaState(Protocol):
    """Live readings of the replica an extension is bound to (cheap, in memory)."""

    @property
    def worker_id(self) -> UUID: ...
    @property
    def capacity(self) -> int: ...
    @property
    def running_jobs(self) -> int: ...
    @property
    def free_slots(self) -> int: ...
    @property
    def health(self) -> Health: ...


#: Writes the caller's context into a carrier stored with the job (`schedule()`).
ContextInjector = Callable[[MutableMapping[str, str]], None]


class Extension:
    """Override the hooks you need."""

    def middleware(self) -> Sequence[Middleware]:
        """Wrapped around every attempt, after the scheduler's own middleware."""
        return ()

    def event_handler(self) -> EventHandler | None:
        """Called with every event (see `scheduler.events`)."""
        return None

    def context_injector(self) -> ContextInjector | None:
        """Called at `schedule()`: what it writes is stored with the job (`trace_context`)
        and given to the attempt's middleware as `AttemptInfo.trace_context`."""
        return None

    def queue_depth_interval(self) -> float | None:
        """How often (seconds) this extension wants `on_queue_depth()`; None: never. The
        replica reads the database once per interval for all extensions together."""
        return None

    def on_queue_depth(self, depths: Sequence[QueueDepth]) -> None:
        """The queues' backlogs, every `queue_depth_interval()` seconds while started."""

    def bind(self, replica: ReplicaState) -> None:
        """The scheduler started: `replica` reads its live state until it stops."""
