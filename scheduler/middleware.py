"""Middleware: an ordered chain of async functions wrapped around every attempt's call of
the job's code, for timing, error reporting, a database session per job, tracing, or
skipping a job.

    async def timing(attempt: AttemptInfo, call_next: CallNext) -> Any:
        started = time.perf_counter()
        try:
            return await call_next()
        finally:
            log.info("%s took %.3fs", attempt.task_name, time.perf_counter() - started)

The scheduler's middleware runs outermost, in the order given, then the task's own, then
the job. A middleware returns what the attempt returns: the value of `call_next()`, or a
value of its own without calling it (the job is skipped and the attempt succeeds with that
value). Raising before `call_next()` fails the attempt with that error (retried like any
failure); raising `Snooze` snoozes it. Context variables set before `call_next()` are seen
by the job, also by a synchronous job in its thread.

A middleware cannot lose an outcome: once the job has run, an error a middleware raises is
logged and the job's own outcome (its value, or its exception) stands.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from scheduler.errors import ConfigurationError

logger = logging.getLogger("scheduler.middleware")


@dataclass(frozen=True)
class AttemptInfo:
    """What a middleware knows about the attempt it wraps."""

    job_id: str
    task_name: str
    queue: str
    attempt: int
    worker_id: UUID
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    #: Seconds from the job's due time to its start, by the database clock.
    start_lag: float
    #: The trace context stored with the job at `schedule()` (see the `otel` extra).
    trace_context: Mapping[str, str] = field(default_factory=dict)


CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[AttemptInfo, CallNext], Awaitable[Any]]


def validate_middleware(middleware: Sequence[Middleware]) -> tuple[Middleware, ...]:
    """The chain as a tuple, or `ConfigurationError` for anything but a list of callables."""
    if isinstance(middleware, str) or not isinstance(middleware, (list, tuple)):
        raise ConfigurationError(
            f"middleware must be a list of async functions, got {type(middleware).__name__}"
        )
    for layer in middleware:
        if not callable(layer):
            raise ConfigurationError(f"middleware must be async functions, got {layer!r}")
    return tuple(middleware)


async def run_chain(layers: Sequence[Middleware], attempt: AttemptInfo, job: CallNext) -> Any:
    """Run `job` inside `layers` (the first outermost)."""
    return await _Layer(layers, attempt, job).run(0)


class _Layer:
    def __init__(self, layers: Sequence[Middleware], attempt: AttemptInfo, job: CallNext):
        self._layers = layers
        self._attempt = attempt
        self._job = job

    async def run(self, index: int) -> Any:
        if index == len(self._layers):
            return await self._job()
        layer = self._layers[index]
        reached = False
        returned = False
        value: Any = None
        raised: BaseException | None = None

        async def call_next() -> Any:
            nonlocal reached, returned, value, raised
            if reached:
                raise RuntimeError(f"middleware {layer!r} called call_next() twice")
            reached = True
            try:
                value = await self.run(index + 1)
            except BaseException as exc:
                raised = exc
                raise
            returned = True
            return value

        try:
            return await layer(self._attempt, call_next)
        except Exception as exc:
            if not reached or exc is raised:
                raise  # before the job ran (the attempt fails), or the job's own error
            logger.exception(
                "middleware %r raised after job %s attempt %d ran; its outcome stands",
                layer,
                self._attempt.job_id,
                self._attempt.attempt,
            )
            if returned:
                return value
            assert raised is not None
            raise raised from None
