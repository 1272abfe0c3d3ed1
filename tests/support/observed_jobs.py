"""Module-level tasks and middleware for the observability tests (middleware, events,
metrics, tracing): tasks need importable names, also in a child replica."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio

from scheduler import AttemptInfo, CallNext, Snooze, current_job, task

#: What a "session per job" middleware hands the job (a stand-in for a DB session).
SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)
#: Per test key: the order things happened in.
LOG: dict[str, list[str]] = {}


def note(key: str, what: str) -> None:
    LOG.setdefault(key, []).append(what)


async def open_session(attempt: AttemptInfo, call_next: CallNext) -> Any:
    """A session per job: opened before, seen by the job through a context variable, closed
    after whatever the job did."""
    key = str(attempt.args[0])
    token = SESSION.set(f"session-{attempt.job_id}-{attempt.attempt}")
    note(key, "session open")
    try:
        return await call_next()
    finally:
        SESSION.reset(token)
        note(key, "session closed")


async def task_layer(attempt: AttemptInfo, call_next: CallNext) -> Any:
    note(str(attempt.args[0]), f"task layer {attempt.task_name.rsplit(':', 1)[-1]}")
    return await call_next()


@task(middleware=[task_layer])
async def uses_session(key: str) -> str | None:
    note(key, "job")
    return SESSION.get()


@task(middleware=[task_layer])
def uses_session_sync(key: str) -> str | None:
    note(key, "job sync")
    return SESSION.get()


@task
async def succeed(key: str) -> str:
    note(key, "job")
    return "ok"


@task
async def fail(key: str) -> None:
    note(key, "job")
    raise ValueError(f"failing on purpose ({key})")


@task
async def fail_first(key: str) -> str:
    note(key, "job")
    if current_job().attempt == 1:
        raise ValueError("first attempt fails")
    return "ok"


@task
async def wait_for_cancel(key: str) -> None:
    note(key, "job")
    await anyio.sleep_forever()


@task
async def snooze_once(key: str) -> str:
    note(key, "job")
    if current_job().attempt == 1:
        raise Snooze(0.05)
    return "ok"


@task
async def traced(key: str) -> str:
    """Opens a span of its own: with tracing on, a child of the attempt's span."""
    from opentelemetry import trace

    with trace.get_tracer("tests").start_as_current_span("inside the job"):
        note(key, "job")
    return key
