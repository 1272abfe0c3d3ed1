"""Where middleware, events and extensions meet the scheduler: one object built from the
`Scheduler(middleware=..., event_handlers=..., extensions=...)` settings that the runner,
the ticker and the producing methods call at their hook points.

When nothing is configured, `Observability.active` is False and the runner never calls in
here: a job then costs one `if` more than without this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any
from uuid import UUID

from scheduler.errors import ConfigurationError
from scheduler.events import EventBus, EventHandler, EventKind, JobEvent
from scheduler.extensions import ContextInjector, Extension, QueueDepth
from scheduler.health import Health
from scheduler.middleware import AttemptInfo, Middleware, run_chain, validate_middleware
from scheduler.outcomes import NOT_WRITTEN, Outcome
from scheduler.recurring import SlotJob
from scheduler.running_jobs import RunningJob, RunningJobs, WorkerIdentity
from scheduler.store import NewJob
from scheduler.task_definition import TaskDefinition

logger = logging.getLogger("scheduler.observing")

JobCall = Callable[[RunningJob, TaskDefinition, tuple[Any, ...], dict[str, Any]], Any]


#: A stored trace context larger than this is dropped (with a warning): it rides along
#: with every claim of the job.
MAX_TRACE_CONTEXT_BYTES = 4096


def observability(
    middleware: Sequence[Middleware],
    event_handlers: Sequence[EventHandler],
    extensions: Sequence[Extension],
) -> Observability:
    """Checked settings, or `ConfigurationError` saying what was expected."""
    layers = validate_middleware(middleware)
    if isinstance(event_handlers, str) or not isinstance(event_handlers, (list, tuple)):
        raise ConfigurationError("event_handlers must be a list of functions taking a JobEvent")
    for handler in event_handlers:
        if not callable(handler):
            raise ConfigurationError(f"event handlers must be callable, got {handler!r}")
    if isinstance(extensions, str) or not isinstance(extensions, (list, tuple)):
        raise ConfigurationError("extensions must be a list of Extension objects")
    for extension in extensions:
        if not isinstance(extension, Extension):
            raise ConfigurationError(
                f"extensions must be Extension objects (scheduler.extensions), got {extension!r}"
            )
    return Observability(layers, event_handlers, extensions)


class Observability:
    def __init__(
        self,
        middleware: Sequence[Middleware] = (),
        event_handlers: Sequence[EventHandler] = (),
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.extensions = tuple(extensions)
        layers = list(middleware)
        handlers = list(event_handlers)
        injectors: list[ContextInjector] = []
        for extension in self.extensions:
            layers.extend(extension.middleware())
            handler = extension.event_handler()
            if handler is not None:
                handlers.append(handler)
            injector = extension.context_injector()
            if injector is not None:
                injectors.append(injector)
        self.middleware: tuple[Middleware, ...] = tuple(layers)
        self.events = EventBus(handlers)
        self._injectors = tuple(injectors)
        intervals = [
            interval
            for extension in self.extensions
            if (interval := extension.queue_depth_interval()) is not None
        ]
        #: How often to read queue depths (None: no extension wants them).
        self.queue_depth_interval: float | None = min(intervals) if intervals else None
        # When each attempt's code started (monotonic), for its run time; weak so an
        # abandoned attempt leaves nothing behind.
        self._started: weakref.WeakKeyDictionary[RunningJob, float] = weakref.WeakKeyDictionary()

    @property
    def active(self) -> bool:
        """Whether the runner must call `around()` and `attempt_ended()` for every job."""
        return bool(self.middleware) or bool(self.events)

    # -- producing ----------------------------------------------------------------------
    def with_trace_context(self, jobs: list[NewJob]) -> list[NewJob]:
        """The jobs carrying the caller's context (unchanged when no extension injects)."""
        if not self._injectors:
            return jobs
        carrier: dict[str, str] = {}
        for inject in self._injectors:
            try:
                inject(carrier)
            except Exception:
                logger.exception("context injector %r failed; the job is stored without", inject)
        if not carrier:
            return jobs
        stored = json.dumps(carrier, separators=(",", ":"))
        if len(stored.encode()) > MAX_TRACE_CONTEXT_BYTES:
            logger.warning(
                "trace context of %d bytes is over %d; the job is stored without it",
                len(stored.encode()),
                MAX_TRACE_CONTEXT_BYTES,
            )
            return jobs
        return [dataclasses.replace(job, trace_context=stored) for job in jobs]

    def scheduled(self, jobs: Sequence[NewJob], ids: Sequence[str]) -> None:
        if self.events:
            for job, job_id in zip(jobs, ids, strict=True):
                self.events.emit(
                    JobEvent(EventKind.SCHEDULED, job_id, task_name=job.task_name, queue=job.queue)
                )

    def pending_cancelled(self, job_id: str) -> None:
        if self.events:
            self.events.emit(JobEvent(EventKind.CANCELLED, job_id))

    def schedule_fired(self, slot: SlotJob) -> None:
        self.events.emit(
            JobEvent(
                EventKind.SCHEDULE_FIRED,
                slot.job_id,
                schedule_id=slot.schedule_id,
                fire_time=slot.fire_time,
            )
        )

    # -- one attempt ----------------------------------------------------------------------
    async def around(
        self,
        call: JobCall,
        entry: RunningJob,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run the job's call inside the middleware chain, telling when its code starts."""
        claimed = entry.claimed

        async def job() -> Any:
            self._started[entry] = monotonic()
            if self.events:
                self.events.emit(self._event(EventKind.STARTED, entry))
            return await call(entry, definition, args, kwargs)

        layers = self.middleware + definition.middleware
        if not layers:
            return await job()
        info = AttemptInfo(
            job_id=claimed.lease.job_id,
            task_name=claimed.task_name,
            queue=claimed.queue,
            attempt=claimed.lease.attempt,
            worker_id=claimed.lease.owner,
            args=args,
            kwargs=kwargs,
            start_lag=claimed.start_lag,
            trace_context=_decode_context(claimed.trace_context, claimed.lease.job_id),
        )
        return await run_chain(layers, info, job)

    def attempt_ended(self, entry: RunningJob, outcome: Outcome, written: bool) -> None:
        """After the attempt's outcome was written (or could not be): one ending event, the
        one the outcome reports."""
        if not self.events:
            return
        claimed = entry.claimed
        report = (
            outcome.report(retries_left=claimed.failures + 1 <= claimed.max_retries)
            if written
            else NOT_WRITTEN
        )
        started = self._started.pop(entry, None)
        run_time = None if started is None else monotonic() - started
        event = self._event(report.kind, entry, error=report.error, run_time=run_time)
        if report.parts is not None:
            event = dataclasses.replace(
                event, error_type=report.parts.type, error_message=report.parts.message
            )
        self.events.emit(event)

    @staticmethod
    def _event(
        kind: EventKind,
        entry: RunningJob,
        *,
        error: str | None = None,
        run_time: float | None = None,
    ) -> JobEvent:
        claimed = entry.claimed
        return JobEvent(
            kind,
            claimed.lease.job_id,
            task_name=claimed.task_name,
            queue=claimed.queue,
            attempt=claimed.lease.attempt,
            worker_id=claimed.lease.owner,
            error=error,
            run_time=run_time,
            start_lag=claimed.start_lag,
        )

    # -- the replica --------------------------------------------------------------------
    def bind(
        self, running: RunningJobs, identity: WorkerIdentity, health: Callable[[], Health]
    ) -> None:
        replica = _Replica(running, identity, health)
        for extension in self.extensions:
            try:
                extension.bind(replica)
            except Exception:
                logger.exception("extension %r failed to bind; it sees no replica state", extension)

    def queue_depths(self, depths: Sequence[QueueDepth]) -> None:
        for extension in self.extensions:
            if extension.queue_depth_interval() is None:
                continue
            try:
                extension.on_queue_depth(depths)
            except Exception:
                logger.exception("extension %r failed on queue depths; ignored", extension)


def _decode_context(stored: str | None, job_id: str) -> dict[str, str]:
    if not stored:
        return {}
    try:
        carrier = json.loads(stored)
    except ValueError:
        logger.warning("job %s: its stored trace context is not JSON; ignored", job_id)
        return {}
    if not isinstance(carrier, dict):
        return {}
    return {str(key): str(value) for key, value in carrier.items()}


class _Replica:
    def __init__(
        self, running: RunningJobs, identity: WorkerIdentity, health: Callable[[], Health]
    ) -> None:
        self._running = running
        self._identity = identity
        self._health = health

    @property
    def health(self) -> Health:
        return self._health()

    @property
    def worker_id(self) -> UUID:
        return self._identity.current

    @property
    def capacity(self) -> int:
        return self._running.capacity

    @property
    def running_jobs(self) -> int:
        return self._running.executing

    @property
    def free_slots(self) -> int:
        return self._running.free_slots
