"""Process execution: the settings and task definitions it refuses, before anything starts
or reaches the database (process jobs themselves run in
tests/integration/test_process_jobs.py)."""

from __future__ import annotations

import types

import pytest

from scheduler import ConfigurationError, task
from scheduler.tasks import validate_executor
from tests.support import jobs
from tests.support.unconnected import unconnected_scheduler


def test_process_settings_and_definitions_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="at most max_concurrent_jobs"):
        unconnected_scheduler(max_concurrent_jobs=2, process_pool_size=3)
    with pytest.raises(ConfigurationError, match="process_max_jobs_per_child"):
        unconnected_scheduler(process_max_jobs_per_child=0)
    with pytest.raises(ConfigurationError, match="executor must be None"):
        task(executor="thread")(jobs.record)
    with pytest.raises(ConfigurationError, match="at module level"):
        validate_executor(lambda: None, "process")
    main_function = types.FunctionType((lambda: None).__code__, {"__name__": "__main__"})
    main_function.__qualname__ = "main_function"
    with pytest.raises(ConfigurationError, match="__main__"):
        validate_executor(main_function, "process")
