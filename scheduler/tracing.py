"""OpenTelemetry tracing (the optional extra `otel`): an extension that stores the trace
context of the code calling `schedule()` with the job, and runs every attempt inside a
span whose parent is that context, on whichever replica runs it.

    scheduler = Scheduler(pool, extensions=[OpenTelemetryTracing()])

The context is written by the global propagator (W3C `traceparent`/`tracestate` unless
the application configured another), so the producer and the replicas must agree on it.
The span is current while the job's code runs: spans the job opens are its children,
also in a synchronous job's thread.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from scheduler.context import Snooze
from scheduler.errors import ConfigurationError, JobInterruptedError
from scheduler.extensions import ContextInjector, Extension
from scheduler.middleware import AttemptInfo, CallNext, Middleware

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

#: The span attributes of an attempt.
JOB_ID = "scheduler.job.id"
TASK = "scheduler.task"
ATTEMPT = "scheduler.attempt"
QUEUE = "scheduler.queue"
START_LAG = "scheduler.start_lag"


def _otel() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Status
    except ImportError:  # pragma: no cover - exercised by the no-extras check
        raise ConfigurationError(
            "OpenTelemetryTracing needs opentelemetry-api: pip install 'pgcadence[otel]'"
        ) from None
    return propagate, trace, Status


class OpenTelemetryTracing(Extension):
    """`tracer_provider`: where spans go (default: the global provider)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._propagate, trace, self._status = _otel()
        self._trace = trace
        self._tracer: Tracer = trace.get_tracer("scheduler", tracer_provider=tracer_provider)

    def context_injector(self) -> ContextInjector | None:
        return self._inject

    def middleware(self) -> Sequence[Middleware]:
        return (self._span,)

    def _inject(self, carrier: MutableMapping[str, str]) -> None:
        self._propagate.inject(carrier)

    async def _span(self, attempt: AttemptInfo, call_next: CallNext) -> Any:
        parent = self._propagate.extract(dict(attempt.trace_context))
        attributes: dict[str, Any] = {
            JOB_ID: attempt.job_id,
            TASK: attempt.task_name,
            ATTEMPT: attempt.attempt,
            QUEUE: attempt.queue,
            START_LAG: attempt.start_lag,
        }
        with self._tracer.start_as_current_span(
            f"run {attempt.task_name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call_next()
            except Snooze:
                span.set_attribute("scheduler.snoozed", True)
                raise
            except Exception as exc:
                if not isinstance(exc, JobInterruptedError):
                    span.record_exception(exc)
                    span.set_status(self._status(self._trace.StatusCode.ERROR, repr(exc)))
                raise
            except BaseException:
                span.set_attribute("scheduler.interrupted", True)
                raise
