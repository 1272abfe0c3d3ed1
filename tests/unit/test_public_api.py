from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

import scheduler
from scheduler import ConfigurationError, JobPriority, Scheduler
from scheduler.postgres.sql import Queries, render, validate_schema_name

#: A DSN the scheduler would open a pool for on first use: these tests never use it.
UNUSED_DSN = "postgresql://unused@127.0.0.1:5432/unused"


def test_all_lists_exactly_the_public_names() -> None:
    # Submodules become attributes of the package once anything imports them: not API.
    public = {
        name
        for name in dir(scheduler)
        if not name.startswith("_") and not isinstance(getattr(scheduler, name), ModuleType)
    }
    assert set(scheduler.__all__) == public - {"annotations"}
    for name in scheduler.__all__:
        assert getattr(scheduler, name) is not None


def test_priorities_are_ordered_and_unknown_ones_refused() -> None:
    assert JobPriority.LOW < JobPriority.NORMAL < JobPriority.HIGH < JobPriority.CRITICAL
    assert JobPriority.coerce(20) is JobPriority.CRITICAL
    for bad in (7, "high", True, None, 5.0):
        with pytest.raises(ValueError, match="unknown priority"):
            JobPriority.coerce(bad)


@pytest.mark.parametrize(
    "name",
    [
        'x"; DROP TABLE jobs; --',
        "Upper",
        "1starts_with_digit",
        "",
        "a" * 49,
        "spa ce",
        "pg_catalog.evil",
        "ünïcode",
        "scheduler\n",
        "pg_temp",
        "pg_scheduler",
    ],
)
def test_hostile_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema name"):
        validate_schema_name(name)


def test_schema_name_is_quoted_in_every_query() -> None:
    queries = Queries("my_schema")
    for name in queries.names():
        sql = getattr(queries, name)
        assert "{schema}" not in sql
        if "jobs" in sql or "workers" in sql:  # tables, and views over them
            assert '"my_schema".' in sql
    assert render("{schema}.x {channel}", "s") == "\"s\".x 's_events'"


def test_scheduler_settings_are_validated_before_anything_runs() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent_jobs"):
        Scheduler(UNUSED_DSN, max_concurrent_jobs=0)
    with pytest.raises(ConfigurationError, match="at most half"):
        Scheduler(UNUSED_DSN, lease_time=10, heartbeat_interval=6)
    with pytest.raises(ConfigurationError, match="schema name"):
        Scheduler(UNUSED_DSN, schema="robert'); drop table students;--")
    with pytest.raises(ConfigurationError, match="seconds"):
        Scheduler(UNUSED_DSN, lease_time="30")  # type: ignore[arg-type]


def test_listen_dsn_must_be_a_postgresql_url() -> None:
    for bad in (
        5432,
        b"postgresql://db/x",
        "db-host:5432",
        "mysql://db/x",
        "postgresql://db:port/x",
    ):
        with pytest.raises(ConfigurationError, match="listen_dsn must be a PostgreSQL URL"):
            Scheduler(UNUSED_DSN, listen_dsn=bad)  # type: ignore[arg-type]
    secret = "postgresql://app:secret@db-host:5432/app?application_name=listener"
    assert "secret" not in repr(Scheduler(UNUSED_DSN, listen_dsn=secret).config)
    # libpq keywords, as everywhere a DSN is taken
    Scheduler(UNUSED_DSN, listen_dsn="host=db-host port=5432 dbname=app user=app")


def test_a_scheduler_can_be_created_outside_an_event_loop() -> None:
    # Frameworks often build their objects at import time; start() runs later in the loop.
    # A DSN's pool is opened on first use, in the loop.
    scheduler = Scheduler(UNUSED_DSN, max_concurrent_jobs=3)
    assert scheduler.running_job_ids == []
    assert scheduler.config.max_concurrent_jobs == 3


@pytest.mark.parametrize(
    "settings",
    [
        {"lease_time": float("nan")},
        {"lease_time": float("inf")},
        {"shutdown_grace": float("nan")},
        {"retention": float("inf")},
        {"cancel_wait": float("-inf")},
        {"unrunnable_job_timeout": float("nan")},
        {"poll_interval": 1e15},
        {"prune_interval": 10**400},
        {"claim_batch_size": 2**31},
        {"orphan_retries": 2**31},
        {"orphan_retries": True},
        {"max_payload_bytes": 1.5},
        {"retry_backoff": "exponential"},
    ],
)
def test_out_of_range_settings_raise_configuration_error(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Scheduler(UNUSED_DSN, **settings)


def test_a_huge_concurrency_limit_is_accepted() -> None:
    scheduler = Scheduler(UNUSED_DSN, max_concurrent_jobs=10**12)
    assert scheduler.config.max_concurrent_jobs == 10**12
