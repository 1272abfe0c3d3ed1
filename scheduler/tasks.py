"""Tasks: the code a replica is willing to run. A job row names a task by its registered
name; a replica claims only jobs whose task it has registered, and nothing else ever runs.

A function gets a stable name ``module:qualname`` that must resolve back to the very same
object, the test pickle uses for functions. Lambdas, closures, partials and callable
instances fail it and must be registered with an explicit ``name=``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar, overload

from scheduler import validation
from scheduler.errors import (
    ConfigurationError,
    InvalidJobError,
    TaskNotNameableError,
    TaskNotRegisteredError,
)
from scheduler.middleware import Middleware, validate_middleware
from scheduler.retry_backoff import RetryBackoff
from scheduler.task_definition import TaskDefinition

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("scheduler.tasks")

TASK_NAME_MAX_LENGTH = 255
_TASK_NAME_PATTERN = re.compile(r"[A-Za-z_][\w.:<>-]*")


def task_name_for(func: Callable[..., Any], *, check_resolvable: bool = True) -> str:
    """The stable name of a function, or `TaskNotNameableError` saying what to do instead.

    `check_resolvable=False` is for decorators, which run before the module attribute
    exists; the lambda and closure checks still apply.
    """
    definition = getattr(func, "__scheduler_task__", None)
    if isinstance(definition, TaskDefinition):
        return definition.name
    if inspect.ismethod(func):
        raise TaskNotNameableError(
            f"{func!r} is a bound method; its instance cannot be stored as JSON. Schedule a"
            " module-level function, or register the method with an explicit name:"
            " scheduler.register(obj.method, name='...')"
        )
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not callable(func) or module is None or qualname is None:
        raise TaskNotNameableError(
            f"{func!r} has no __module__/__qualname__ (a functools.partial or a callable"
            " instance?); schedule a module-level function and pass data as args, or"
            " register it with an explicit name"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TaskNotNameableError(
            f"{module}.{qualname} is a lambda or a function defined inside another function;"
            " other replicas cannot find it by name. Define it at module level."
        )
    if check_resolvable and _resolve(module, qualname) is not func:
        raise TaskNotNameableError(
            f"{module}:{qualname} does not resolve back to {func!r} (is it wrapped by a"
            " decorator without functools.wraps, or shadowed?); register it with an explicit"
            " name"
        )
    return f"{module}:{qualname}"


#: The values `executor=` accepts besides None.
EXECUTORS = ("process",)


def validate_executor(func: Callable[..., Any], executor: str | None) -> str | None:
    """`executor` if `func` can run there, else `ConfigurationError` saying what to do.

    A process child imports the function by its module and qualified name, so it must be a
    plain module-level function of an importable module (not `__main__`)."""
    if executor is None:
        return None
    if executor not in EXECUTORS:
        raise ConfigurationError(
            f"executor must be None (the event loop, or a thread for a sync function) or one"
            f" of {', '.join(map(repr, EXECUTORS))}; got {executor!r}"
        )
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not inspect.isfunction(func) or module is None or qualname is None:
        raise ConfigurationError(
            f"{func!r} cannot run in a process: a child imports it by name, so it must be a"
            " module-level function (not a partial, a bound method or a callable instance)"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ConfigurationError(
            f"{module}.{qualname} cannot run in a process: a child imports it by name; define"
            " it at module level"
        )
    if module == "__main__":
        raise ConfigurationError(
            f"{qualname} is defined in the __main__ script, which a child process cannot"
            " import by name; move it to a module and import it from there"
        )
    return executor


def import_path_of(definition: TaskDefinition) -> str:
    """Where a process child finds the task's function: ``module:qualname``, taken from the
    registered function itself, never from a job row."""
    return f"{definition.func.__module__}:{definition.func.__qualname__}"


def validate_task_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > TASK_NAME_MAX_LENGTH:
        raise TaskNotNameableError(
            f"task name must be a non-empty str of at most {TASK_NAME_MAX_LENGTH} characters"
        )
    if not _TASK_NAME_PATTERN.fullmatch(name):
        raise TaskNotNameableError(
            f"task name {name!r} may contain only letters, digits and _ . : < > -"
        )
    return name


class TaskRegistry:
    """Name -> TaskDefinition. Thread-safe because sync tasks may register from threads."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._lock = threading.Lock()

    def add(self, definition: TaskDefinition) -> TaskDefinition:
        with self._lock:
            existing = self._tasks.get(definition.name)
            if existing is not None and existing.func is not definition.func:
                raise ConfigurationError(
                    f"task name {definition.name!r} is already registered for"
                    f" {existing.func!r}; give one of them another name"
                )
            self._tasks[definition.name] = definition
        return definition

    def get(self, name: str) -> TaskDefinition:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotRegisteredError(
                f"task {name!r} is not registered on this replica"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def names(self) -> list[str]:
        return sorted(self._tasks)


#: Functions decorated with `@task` land here; every `Scheduler` in the process runs them.
default_registry = TaskRegistry()


def define_task(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    max_retries: int = 0,
    timeout: float | timedelta | None = None,
    backoff: RetryBackoff | None = None,
    queue: str = "default",
    middleware: Sequence[Middleware] = (),
    check_resolvable: bool = True,
    executor: str | None = None,
) -> TaskDefinition:
    """A task's definition, or a typed error: `TaskNotNameableError` for the name,
    `ConfigurationError` for the defaults."""
    if not callable(func):
        raise TaskNotNameableError(f"{func!r} is not callable")
    retries = validation.validate_retries(max_retries, ConfigurationError)
    seconds = validation.validate_timeout(timeout, ConfigurationError)
    if backoff is not None and not isinstance(backoff, RetryBackoff):
        raise ConfigurationError(f"backoff must be a RetryBackoff or None, got {backoff!r}")
    if name is None:
        name = task_name_for(func, check_resolvable=check_resolvable)
    task_name = validate_task_name(name)
    definition = TaskDefinition(
        name=task_name,
        func=func,
        max_retries=retries,
        timeout=seconds,
        backoff=backoff,
        queue=validation.validate_queue_name(queue, ConfigurationError),
        middleware=validate_middleware(middleware),
        executor=validate_executor(func, executor),
    )
    if seconds is not None and not definition.is_async and executor is None:
        logger.warning(
            "task %s is synchronous: its timeout of %ss is cooperative. A thread cannot be"
            " interrupted; the job must check current_job().cancel_requested (or call"
            " current_job().raise_if_cancelled()) to stop in time",
            task_name,
            seconds,
        )
    return definition


@overload
def task(func: F, /) -> F: ...
@overload
def task(
    *,
    name: str | None = None,
    max_retries: int = 0,
    timeout: float | timedelta | None = None,
    backoff: RetryBackoff | None = None,
    queue: str = "default",
    middleware: Sequence[Middleware] = (),
    executor: str | None = None,
) -> Callable[[F], F]: ...
def task(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 0,
    timeout: float | timedelta | None = None,
    backoff: RetryBackoff | None = None,
    queue: str = "default",
    middleware: Sequence[Middleware] = (),
    executor: str | None = None,
) -> F | Callable[[F], F]:
    """Register a function as a task in every scheduler of this process.

    Use bare (``@task``) or with defaults (``@task(max_retries=3, timeout=60)``). The
    function is returned unchanged, so it can still be called directly. With
    ``executor="process"`` its jobs run in a child process, where a timeout or a cancel
    kills it (see Execution backends in the docs).
    """

    def decorate(f: F) -> F:
        definition = define_task(
            f,
            name=name,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            queue=queue,
            middleware=middleware,
            check_resolvable=False,
            executor=executor,
        )
        default_registry.add(definition)
        f.__scheduler_task__ = definition  # type: ignore[attr-defined]
        return f

    return decorate(func) if func is not None else decorate


def _resolve(module: str, qualname: str) -> object:
    obj: object = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class TaskCatalog:
    """What one scheduler can run: its own registrations, then the process-wide `@task`s.

    It also resolves what `schedule()` is handed, a callable or a task name, to the task's
    definition (`resolve`).
    """

    def __init__(self, own: TaskRegistry | None = None, shared: TaskRegistry = default_registry):
        self.own = own if own is not None else TaskRegistry()
        self.shared = shared
        # Bulk enqueue resolves one callable thousands of times: remember the answers.
        self._resolved: dict[Callable[..., Any], TaskDefinition] = {}

    def register(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        max_retries: int = 0,
        timeout: float | timedelta | None = None,
        backoff: RetryBackoff | None = None,
        queue: str = "default",
        middleware: Sequence[Middleware] = (),
        executor: str | None = None,
    ) -> TaskDefinition:
        """Let this scheduler run `func` (under `name`, default ``module:qualname``)."""
        definition = self.own.add(
            define_task(
                func,
                name=name,
                max_retries=max_retries,
                timeout=timeout,
                backoff=backoff,
                queue=queue,
                middleware=middleware,
                executor=executor,
            )
        )
        self._resolved.clear()  # a remembered answer may predate this registration
        return definition

    def resolve(self, func: Callable[..., Any] | str) -> TaskDefinition:
        """The definition of the task `func` names, registering a plain module-level
        function on first use; a typed error if it cannot be named.

        By name, a task this replica does not run resolves to a definition that only
        names it: a producer need not import the code a worker replica runs.
        """
        if isinstance(func, str):
            if func in self:
                return self.get(func)
            return TaskDefinition(name=validate_task_name(func), func=_not_runnable_here)
        try:
            return self._resolved[func]
        except (KeyError, TypeError):  # not seen yet, or unhashable (never remembered)
            pass
        definition = self._resolve_callable(func)
        with contextlib.suppress(TypeError):
            self._resolved[func] = definition
        return definition

    def _resolve_callable(self, func: Callable[..., Any]) -> TaskDefinition:
        # Registered here, maybe under an explicit name (a lambda, a partial, "X").
        registered = [definition for definition in self.own if definition.func is func]
        if len(registered) == 1:
            return registered[0]
        if registered:
            names = ", ".join(sorted(repr(definition.name) for definition in registered))
            raise TaskNotNameableError(
                f"{func!r} is registered under several names ({names}); schedule it by name"
            )
        name = task_name_for(func)
        if name in self:
            definition = self.get(name)
            if definition.func is not func and getattr(func, "__scheduler_task__", None) is None:
                raise InvalidJobError(f"task name {name!r} is registered for another callable")
            return definition
        return self.own.add(define_task(func))

    def get(self, name: str) -> TaskDefinition:
        if name in self.own:
            return self.own.get(name)
        return self.shared.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.shared

    def names(self) -> list[str]:
        return sorted(set(self.own.names()) | set(self.shared.names()))

    def queues(self) -> list[str]:
        """The queues a replica works when it is not given any: "default" and every queue
        a task it runs declares."""
        declared = {definition.queue for definition in (*self.own, *self.shared)}
        return sorted(declared | {"default"})


def _not_runnable_here(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("a task scheduled by name is never run by the producer")
