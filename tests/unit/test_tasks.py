from __future__ import annotations

import functools
from typing import Any

import pytest

from scheduler import TaskNotNameableError, task
from scheduler.tasks import TaskCatalog, TaskRegistry, define_task, task_name_for
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
