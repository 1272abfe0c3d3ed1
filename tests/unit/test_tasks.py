from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest

from scheduler import ConfigurationError, SchedulerError, TaskNotNameableError, task
from scheduler.tasks import (
    TaskCatalog,
    TaskRegistry,
    define_task,
    task_name_for,
    validate_task_name,
)
from tests.support import jobs


async def module_level(x: int) -> None:
    return None


@task(name="tests.unit.renamed", max_retries=2, timeout=5)
async def decorated() -> None:
    return None


class Holder:
    async def method(self) -> None:
        return None


def test_module_level_functions_are_named_by_module_and_qualname() -> None:
    assert task_name_for(module_level) == "tests.unit.test_tasks:module_level"
    assert task_name_for(jobs.record) == "tests.support.jobs:record"


def test_decorated_tasks_keep_their_name_and_defaults() -> None:
    assert task_name_for(decorated) == "tests.unit.renamed"
    definition = decorated.__scheduler_task__  # type: ignore[attr-defined]
    assert (definition.max_retries, definition.timeout, definition.is_async) == (2, 5, True)


def test_lambdas_closures_partials_and_instances_are_refused() -> None:
    def closure() -> None:
        return None

    class CallableThing:
        def __call__(self) -> None:
            return None

    for bad in (
        lambda: None,
        closure,
        functools.partial(module_level, 1),
        CallableThing(),
        Holder().method,
    ):
        with pytest.raises(TaskNotNameableError):
            task_name_for(bad)


def test_a_function_that_does_not_resolve_back_is_refused() -> None:
    def impostor() -> None:
        return None

    impostor.__qualname__ = "module_level"
    with pytest.raises(TaskNotNameableError, match="does not resolve back"):
        task_name_for(impostor)


def test_explicit_names_allow_any_callable_but_are_validated() -> None:
    definition = define_task(functools.partial(module_level, 1), name="partial-task")
    assert definition.name == "partial-task"
    assert definition.is_async
    with pytest.raises(TaskNotNameableError, match="may contain only"):
        define_task(module_level, name="drop table; --")


def test_registry_refuses_one_name_for_two_functions() -> None:
    registry = TaskRegistry()
    registry.add(define_task(module_level))
    registry.add(define_task(module_level))  # same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        registry.add(define_task(jobs.record, name="tests.unit.test_tasks:module_level"))


def test_catalog_prefers_own_registrations_and_lists_both() -> None:
    own = TaskRegistry()
    own.add(define_task(module_level))
    catalog = TaskCatalog(own)
    assert "tests.unit.renamed" in catalog.names()
    assert "tests.unit.test_tasks:module_level" in catalog.names()
    assert catalog.get("tests.unit.test_tasks:module_level").func is module_level


def test_sync_functions_are_not_async() -> None:
    sync_definition: Any = define_task(jobs.record_sync)
    assert not sync_definition.is_async


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2**31}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": "60"}, "timeout"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"backoff": 3}, "backoff"),
    ],
)
def test_bad_task_defaults_raise_a_typed_error(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as info:
        task(**settings)(module_level)
    assert isinstance(info.value, SchedulerError) and isinstance(info.value, ValueError)
    with pytest.raises(ConfigurationError, match=fragment):
        TaskCatalog().register(module_level, **settings)


def test_task_timeouts_may_be_timedeltas() -> None:
    @task(name="tests.unit.timedelta_timeout", timeout=timedelta(minutes=1))
    async def limited() -> None:
        return None

    assert limited.__scheduler_task__.timeout == 60.0  # type: ignore[attr-defined]
    definition = TaskCatalog().register(module_level, timeout=timedelta(seconds=1.5))
    assert definition.timeout == 1.5


def test_a_second_callable_under_a_taken_name_is_a_typed_error() -> None:
    catalog = TaskCatalog()
    catalog.register(module_level, name="taken")
    with pytest.raises(ConfigurationError, match="already registered"):
        catalog.register(jobs.record, name="taken")


def test_task_names_must_match_in_full() -> None:
    for bad in ("tasks:run\n", "tasks:run\x00", "tasks:\ud800", " tasks:run"):
        with pytest.raises(TaskNotNameableError):
            validate_task_name(bad)


def test_resolve_finds_a_callable_under_the_name_it_was_registered_with() -> None:
    catalog = TaskCatalog()
    shout = lambda: None  # noqa: E731 - a lambda is the point
    catalog.register(module_level, name="renamed-task")
    catalog.register(shout, name="shout")
    assert catalog.resolve(module_level).name == "renamed-task"
    assert catalog.resolve(shout).name == "shout"
    assert catalog.resolve("shout").func is shout
    # Unregistered: named module:qualname and registered on first use.
    assert catalog.resolve(jobs.record).name == "tests.support.jobs:record"
    assert "tests.support.jobs:record" in catalog.own
    with pytest.raises(TaskNotNameableError):
        catalog.resolve(lambda: None)


def test_resolve_answers_from_its_memory_until_a_registration() -> None:
    catalog = TaskCatalog()
    first = catalog.resolve(module_level)
    assert first.name == "tests.unit.test_tasks:module_level"
    assert catalog.resolve(module_level) is first
    catalog.register(module_level, name="later-name")
    with pytest.raises(TaskNotNameableError, match="several names"):
        catalog.resolve(module_level)


def test_resolve_by_an_unknown_name_gives_a_definition_that_only_names_it() -> None:
    definition = TaskCatalog().resolve("elsewhere:task")
    assert definition.name == "elsewhere:task"
    with pytest.raises(AssertionError):
        definition.func()
