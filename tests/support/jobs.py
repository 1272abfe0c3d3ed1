"""Module-level task functions for the tests (tasks must have importable names).

They record what happened in `CALLS` (in-process tests) keyed by a caller-chosen key."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import anyio

from scheduler import Snooze, current_job

CALLS: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
_lock = threading.Lock()


def _note(key: str, **fields: Any) -> None:
    job = current_job()
    with _lock:
        CALLS[key].append(
            {"job_id": job.job_id, "attempt": job.attempt, "wall": time.time(), **fields}
        )


async def record(key: str = "unkeyed", value: Any = None) -> None:
    """Notes its call under `key`. Many tests schedule it without arguments only to store
    a job (it never runs there): `schedule()` checks the arguments fit (issue 19.11)."""
    _note(key, value=value, at=time.monotonic())


async def accept_anything(*args: Any, **kwargs: Any) -> None:
    """Takes any arguments: for tests about how arguments are stored."""


def record_sync(key: str, value: Any = None) -> None:
    _note(key, value=value, thread=threading.current_thread().name)


async def sleep_then_record(key: str, seconds: float) -> None:
    _note(key, event="started")
    await anyio.sleep(seconds)
    _note(key, event="finished")


async def fail_first(key: str, failures: int) -> None:
    job = current_job()
    _note(key, event="attempt")
    if job.attempt <= failures:
        raise RuntimeError(f"planned failure {job.attempt}")


async def always_fail(key: str) -> None:
    _note(key, event="attempt")
    raise ValueError("this job always fails")


async def wait_forever(key: str) -> None:
    _note(key, event="started")
    try:
        await anyio.sleep_forever()
    finally:
        _note(key, event="interrupted")


async def raise_cancelled(key: str) -> None:
    _note(key, event="attempt")
    raise anyio.get_cancelled_exc_class()()


async def raise_keyboard_interrupt(key: str) -> None:
    _note(key, event="attempt")
    raise KeyboardInterrupt


async def raise_timeout_error(key: str) -> None:
    _note(key, event="attempt")
    raise TimeoutError("the job's own network call timed out")


def sleep_sync(key: str, seconds: float) -> None:
    _note(key, event="started")
    time.sleep(seconds)
    _note(key, event="finished")


def calls(key: str, **match: Any) -> list[dict[str, Any]]:
    with _lock:
        return [c for c in CALLS[key] if all(c.get(k) == v for k, v in match.items())]


async def hang_on_first_attempt(key: str) -> None:
    """Hangs in attempt 1 (until cancelled); later attempts succeed at once."""
    _note(key, event="started")
    if current_job().attempt == 1:
        try:
            await anyio.sleep_forever()
        finally:
            _note(key, event="interrupted")
    _note(key, event="finished")


_pools: dict[str, Any] = {}


def use_pool(key: str, pool: Any) -> None:
    _pools[key] = pool


async def query_then_record(key: str, hold: float) -> None:
    """Borrow a connection from the test's pool for `hold` seconds, like real jobs do."""
    _note(key, event="started")
    async with _pools[key].acquire() as conn:
        await conn.execute("SELECT pg_sleep($1)", hold)
    _note(key, event="finished")


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot describe itself")


async def raise_unstorable(kind: str) -> None:
    """Fails with an exception whose text PostgreSQL cannot store as it is."""
    _note(kind, event="attempt")
    if kind == "nul":
        raise ValueError("bad\x00byte")
    if kind == "surrogate":
        raise ValueError("lone \ud800 surrogate")
    if kind == "unprintable":
        raise _UnprintableError()
    raise ValueError("x" * 5_000_000)


async def clean_up_when_cancelled(key: str, seconds: float) -> None:
    """A well-behaved job whose clean-up takes `seconds` after a cancel (it awaits, as a
    rollback or a flush would) before letting the cancellation through."""
    _note(key, event="started")
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        _note(key, event="cleaning up")
        await asyncio.sleep(seconds)
        _note(key, event="cleaned up")
        raise


async def swallow_the_first_cancel(key: str) -> None:
    """Loses the first cancellation (as asyncio.wait_for could before Python 3.12) and
    lets the next one through."""
    _note(key, event="started")
    swallowed = False
    while True:
        try:
            await anyio.sleep(0.05)
        except anyio.get_cancelled_exc_class():
            if swallowed:
                _note(key, event="stopped")
                raise
            swallowed = True
            _note(key, event="swallowed a cancellation")


async def ignore_cancellation(key: str) -> None:
    """A badly behaved async job: swallows every cancellation until `release(key)`."""
    _note(key, event="started")
    while key not in _released:
        try:
            await anyio.sleep(0.05)
        except anyio.get_cancelled_exc_class():
            _note(key, event="swallowed a cancellation")


def block_thread(key: str) -> None:
    """A sync job that never looks at current_job() and blocks until `release(key)`."""
    _note(key, event="started")
    _released_events.setdefault(key, threading.Event()).wait(60)
    _note(key, event="finished")


def sync_until_cancelled(key: str, seconds: float) -> None:
    """A well-behaved sync job: polls current_job() and stops when asked."""
    _note(key, event="started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current_job().raise_if_cancelled()
        time.sleep(0.01)
    _note(key, event="finished")


def sync_polls_then_returns(key: str, seconds: float) -> None:
    """Polls cancel_requested and returns normally (without raising) when asked."""
    _note(key, event="started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if current_job().cancel_requested:
            _note(key, event="saw the request", reason=current_job().stop_reason)
            return
        time.sleep(0.01)
    _note(key, event="finished")


_released: set[str] = set()
_released_events: dict[str, threading.Event] = {}


def release(key: str) -> None:
    _released.add(key)
    _released_events.setdefault(key, threading.Event()).set()


async def give_back(value: Any) -> Any:
    """Return what it was given: the job's result."""
    return value


def give_back_sync(value: Any) -> Any:
    return value


async def return_unstorable(kind: str) -> Any:
    """A return value that cannot be stored: not JSON, or (kind "big") over a small cap."""
    _note(kind, event="attempt")
    if kind == "big":
        return "x" * 10_000
    return {"when": object()}


async def snooze_until_attempt(key: str, attempt: int, delay: float) -> int:
    """Snooze (raising `Snooze`) until the given attempt, then return its number."""
    _note(key, event="attempt")
    if current_job().attempt < attempt:
        raise Snooze(delay)
    return current_job().attempt


def snooze_once_sync(key: str, delay: float) -> str:
    """A thread's job snoozing through `current_job().snooze()`."""
    _note(key, event="attempt")
    if current_job().attempt == 1:
        current_job().snooze(timedelta(seconds=delay))
    return "woke up"
