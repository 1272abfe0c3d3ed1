"""`listen=False` (a poll-only replica, scheduler/poll_only.py): its settings are checked at
construction with typed errors, and its poll interval defaults to the wake-up it replaces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from scheduler import ConfigurationError, Scheduler, SchedulerError
from scheduler.config import SchedulerConfig
from scheduler.poll_only import POLL_ONLY_INTERVAL, check_pool_size, min_pool_size

UNUSED_DSN = "postgresql://unused@127.0.0.1:5432/unused"


class _Pool:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def get_max_size(self) -> int:
        return self.max_size


def test_a_listening_replica_keeps_its_30_second_backstop_poll() -> None:
    assert Scheduler(UNUSED_DSN).config.poll_interval == 30.0
    assert Scheduler(UNUSED_DSN).config.listen is True


def test_a_poll_only_replica_polls_every_second_unless_told_otherwise() -> None:
    assert POLL_ONLY_INTERVAL == 1.0
    assert Scheduler(UNUSED_DSN, listen=False).config.poll_interval == POLL_ONLY_INTERVAL
    config = Scheduler(UNUSED_DSN, listen=False, poll_interval=timedelta(seconds=5)).config
    assert (config.listen, config.poll_interval) == (False, 5.0)
    assert SchedulerConfig.from_options(listen=False, poll_interval=0.2).poll_interval == 0.2


@pytest.mark.parametrize("listen", [None, 0, 1, "false", "no"])
def test_listen_must_be_a_bool(listen: Any) -> None:
    with pytest.raises(ConfigurationError, match="listen must be True") as refused:
        Scheduler(UNUSED_DSN, listen=listen)
    assert isinstance(refused.value, SchedulerError)


@pytest.mark.parametrize("poll_interval", [0, -1, float("nan"), 1e15, "1"])
def test_a_poll_only_replica_still_needs_a_valid_poll_interval(poll_interval: Any) -> None:
    with pytest.raises(ConfigurationError, match="poll_interval"):
        Scheduler(UNUSED_DSN, listen=False, poll_interval=poll_interval)


def test_listen_dsn_without_a_listener_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="listen_dsn would never be used"):
        Scheduler(UNUSED_DSN, listen=False, listen_dsn="postgresql://db-host:5432/app")


def test_the_smallest_pool_a_started_replica_runs_on() -> None:
    assert (min_pool_size(True), min_pool_size(False)) == (2, 1)
    check_pool_size(_Pool(1), listen=False)
    check_pool_size(_Pool(2), listen=True)
    with pytest.raises(ConfigurationError, match=r"at least 2 .*listen=False"):
        check_pool_size(_Pool(1), listen=True)


def test_a_worker_runs_poll_only_on_a_pool_of_one_from_flags_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scheduler.cli import build_parser, worker_settings

    options = build_parser().parse_args(["worker", "--no-listen", "--pool-size", "1"])
    assert (worker_settings(options)["listen"], options.pool_size) == (False, 1)
    assert "listen" not in worker_settings(build_parser().parse_args(["worker"]))
    monkeypatch.setenv("SCHEDULER_LISTEN", "false")
    monkeypatch.setenv("SCHEDULER_POOL_SIZE", "1")
    options = build_parser().parse_args(["worker"])
    assert (worker_settings(options)["listen"], options.pool_size) == (False, 1)
