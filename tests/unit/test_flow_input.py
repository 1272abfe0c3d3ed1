"""Flow control refuses bad queue names and limits with a typed error before anything
reaches the database (the integration tier checks that a refusal writes nothing and that
the SQL functions refuse the same)."""

from __future__ import annotations

import pytest

from scheduler import ConfigurationError, InvalidJobError
from tests.support import jobs
from tests.support.unconnected import assert_never_connected, unconnected_scheduler

TASK = "tests.support.jobs:record"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 256, "é", 7])
async def test_bad_queue_names_are_refused_before_connecting(bad: object) -> None:
    scheduler = unconnected_scheduler()
    with pytest.raises(InvalidJobError, match="queue must be"):
        await scheduler.schedule(jobs.record, args=("k",), queue=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="queue must be"):
        unconnected_scheduler(queues=[bad])
    with pytest.raises(ConfigurationError, match="queue must be"):
        await scheduler.pause_queue(bad)  # type: ignore[arg-type]
    assert_never_connected(scheduler)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"rate_limit": 5, "rate_period": 0}, "rate_period"),
        ({"rate_limit": 5, "rate_burst": 0}, "rate_burst"),
        ({"concurrency_limit": True}, "concurrency_limit"),
    ],
)
async def test_bad_limits_are_refused_before_connecting(
    options: dict[str, object], message: str
) -> None:
    scheduler = unconnected_scheduler()
    with pytest.raises(ConfigurationError, match=message):
        await scheduler.set_queue_limits("default", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        await scheduler.set_task_limits(TASK, **options)  # type: ignore[arg-type]
    assert_never_connected(scheduler)
