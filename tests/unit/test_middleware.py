"""The middleware chain and the event bus on their own: order, short-circuits, and hooks
that raise never replacing an outcome (issue 14, item 1)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from scheduler import ConfigurationError, EventKind, JobEvent
from scheduler.events import EventBus
from scheduler.middleware import AttemptInfo, CallNext, Middleware, run_chain, validate_middleware

ATTEMPT = AttemptInfo(
    job_id="j1",
    task_name="t",
    queue="default",
    attempt=1,
    worker_id=uuid.uuid4(),
    args=(),
    kwargs={},
    start_lag=0.0,
)


def recording(name: str, log: list[str]) -> Middleware:
    async def layer(attempt: AttemptInfo, call_next: CallNext) -> Any:
        log.append(f"{name} before")
        try:
            return await call_next()
        finally:
            log.append(f"{name} after")

    return layer


async def test_the_first_middleware_is_outermost_and_the_job_runs_inside_all() -> None:
    log: list[str] = []

    async def job() -> str:
        log.append("job")
        return "value"

    layers = [recording("a", log), recording("b", log), recording("c", log)]
    assert await run_chain(layers, ATTEMPT, job) == "value"
    assert log == ["a before", "b before", "c before", "job", "c after", "b after", "a after"]


async def test_a_middleware_that_does_not_call_next_skips_the_job_with_its_value() -> None:
    ran: list[str] = []

    async def skip(attempt: AttemptInfo, call_next: CallNext) -> Any:
        return "skipped"

    async def job() -> str:
        ran.append("job")
        return "value"

    assert await run_chain([skip], ATTEMPT, job) == "skipped"
    assert ran == []


async def test_a_middleware_raising_before_the_job_fails_the_attempt_with_its_error() -> None:
    async def broken(attempt: AttemptInfo, call_next: CallNext) -> Any:
        raise LookupError("no session")

    async def job() -> str:
        raise AssertionError("must not run")

    with pytest.raises(LookupError, match="no session"):
        await run_chain([broken], ATTEMPT, job)


async def test_a_middleware_raising_after_a_success_keeps_the_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def report_then_crash(attempt: AttemptInfo, call_next: CallNext) -> Any:
        await call_next()
        raise RuntimeError("reporting broke")

    async def job() -> str:
        return "value"

    with caplog.at_level(logging.ERROR, "scheduler.middleware"):
        assert await run_chain([report_then_crash], ATTEMPT, job) == "value"
    assert "reporting broke" in caplog.text and "its outcome stands" in caplog.text


async def test_a_middleware_raising_while_handling_the_jobs_error_keeps_that_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def crash_on_error(attempt: AttemptInfo, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except ValueError:
            raise RuntimeError("error reporter broke") from None

    async def job() -> str:
        raise ValueError("the job's own error")

    with (
        caplog.at_level(logging.ERROR, "scheduler.middleware"),
        pytest.raises(ValueError, match="the job's own error"),
    ):
        await run_chain([crash_on_error], ATTEMPT, job)
    assert "error reporter broke" in caplog.text


async def test_a_middleware_may_replace_the_value_and_see_the_jobs_error() -> None:
    seen: list[BaseException] = []

    async def double(attempt: AttemptInfo, call_next: CallNext) -> Any:
        return 2 * await call_next()

    async def observe(attempt: AttemptInfo, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            seen.append(exc)
            raise

    async def job() -> int:
        return 21

    assert await run_chain([double, observe], ATTEMPT, job) == 42

    async def failing() -> int:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await run_chain([double, observe], ATTEMPT, failing)
    assert [type(exc) for exc in seen] == [KeyError]


async def test_calling_next_twice_is_refused_and_the_first_result_stands() -> None:
    runs: list[int] = []

    async def twice(attempt: AttemptInfo, call_next: CallNext) -> Any:
        first = await call_next()
        await call_next()
        return first

    async def job() -> int:
        runs.append(1)
        return len(runs)

    assert await run_chain([twice], ATTEMPT, job) == 1
    assert runs == [1]


def test_bad_middleware_settings_raise_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="list of async functions"):
        validate_middleware("not a list")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be async functions"):
        validate_middleware([42])  # type: ignore[list-item]


def test_an_event_handler_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[EventKind] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError("handler broke")

    bus = EventBus([broken, lambda event: got.append(event.kind)])
    with caplog.at_level(logging.ERROR, "scheduler.events"):
        bus.emit(JobEvent(EventKind.SUCCEEDED, "j1"))
    assert got == [EventKind.SUCCEEDED]
    assert "handler broke" in caplog.text
