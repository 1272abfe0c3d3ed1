"""`TaskDefinition`: a registered callable and its defaults (pure).

Its own module so that validation.py, which tasks.py uses, can take one without importing
the registries."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.middleware import Middleware
from scheduler.retry_backoff import RetryBackoff


@dataclass(frozen=True)
class TaskDefinition:
    """A registered callable and its defaults for jobs that do not override them."""

    name: str
    func: Callable[..., Any]
    max_retries: int = 0
    timeout: float | None = None
    backoff: RetryBackoff | None = None
    #: The queue its jobs go to unless schedule() says otherwise.
    queue: str = "default"
    #: Wrapped around its attempts, inside the scheduler's middleware.
    middleware: tuple[Middleware, ...] = ()
    #: Where its code runs: None (async on the event loop, sync in a thread) or "process"
    #: (in a child process of the replica's pool, see scheduler/executors/process.py).
    executor: str | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", _is_async_callable(self.func))


def _is_async_callable(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable instances
    )
