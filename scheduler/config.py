"""Tunables of one `Scheduler`, validated once at construction."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from scheduler.bounds import INT32_MAX, MAX_PAYLOAD_BYTES, MAX_SLOTS
from scheduler.errors import ConfigurationError
from scheduler.executors.http import validate_allowed_hosts
from scheduler.poll_only import default_poll_interval, validate_listen
from scheduler.postgres.sql import validate_schema_name
from scheduler.retry_backoff import RetryBackoff
from scheduler.serialization import DEFAULT_MAX_PAYLOAD_BYTES
from scheduler.validation import validate_queue_name, validate_seconds

SCHEMA_ENVIRONMENT_VARIABLE = "SCHEDULER_SCHEMA"


@dataclass(frozen=True)
class SchedulerConfig:
    """See the documentation's Configuration page for what each setting trades off."""

    max_concurrent_jobs: int = 10
    #: The most attempts claimed ahead of free slots while jobs are quick (Scheduler's
    #: default: claim_batch_size); how many adapts to the jobs' mean run time.
    prefetch: int = 100
    schema: str = "scheduler"
    auto_migrate: bool = True
    lease_time: float = 30.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 30.0
    #: False: no LISTEN connection; the replica polls every poll_interval (poll_only.py).
    listen: bool = True
    shutdown_grace: float = 30.0
    claim_batch_size: int = 100
    retry_backoff: RetryBackoff = field(default_factory=RetryBackoff)
    reap_interval: float = 15.0
    retention: float = timedelta(days=7).total_seconds()
    prune_interval: float = 300.0
    unrunnable_job_timeout: float | None = 3600.0
    orphan_retries: int = 2
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_result_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    listener_check_interval: float = 15.0
    listener_check_timeout: float = 5.0
    cancel_wait: float = 10.0
    #: The queues this replica works; None: "default" and the queues its tasks declare.
    queues: tuple[str, ...] | None = None
    #: Children for `executor="process"` tasks; None: min(max_concurrent_jobs, CPU count).
    process_pool_size: int | None = None
    #: A child is replaced after this many jobs (None: never for that reason).
    process_max_jobs_per_child: int | None = None
    #: A child whose resident memory exceeds this many MiB after a job is replaced.
    process_max_memory_per_child_mb: int | None = None
    #: Hosts the built-in HTTP task may call; empty: HTTP jobs are off on this replica.
    http_allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_options(
        cls,
        max_concurrent_jobs: int = 10,
        *,
        schema: str | None = None,
        auto_migrate: bool = True,
        lease_time: float | timedelta = 30.0,
        heartbeat_interval: float | timedelta = 10.0,
        poll_interval: float | timedelta | None = None,
        shutdown_grace: float | timedelta = 30.0,
        claim_batch_size: int = 100,
        retry_backoff: RetryBackoff | None = None,
        reap_interval: float | timedelta = 15.0,
        retention: float | timedelta = timedelta(days=7),
        prune_interval: float | timedelta = 300.0,
        unrunnable_job_timeout: float | timedelta | None = 3600.0,
        orphan_retries: int = 2,
        max_payload_bytes: int = 64 * 1024,
        max_result_bytes: int = 64 * 1024,
        listener_check_interval: float | timedelta = 15.0,
        listener_check_timeout: float | timedelta = 5.0,
        cancel_wait: float | timedelta = 10.0,
        queues: Sequence[str] | None = None,
        prefetch: int | None = None,
        process_pool_size: int | None = None,
        process_max_jobs_per_child: int | None = None,
        process_max_memory_per_child_mb: int | None = None,
        http_allowed_hosts: Sequence[str] = (),
        listen: bool = True,
    ) -> SchedulerConfig:
        """The config from `Scheduler`'s keyword arguments (which document them): durations
        as seconds or timedeltas, defaults filled in; `ConfigurationError` on a bad one."""
        return cls(
            max_concurrent_jobs=max_concurrent_jobs,
            prefetch=_default_prefetch(max_concurrent_jobs, claim_batch_size, prefetch),
            schema=schema if schema is not None else default_schema(),
            auto_migrate=auto_migrate,
            lease_time=seconds(lease_time, "lease_time"),
            heartbeat_interval=seconds(heartbeat_interval, "heartbeat_interval"),
            poll_interval=default_poll_interval(listen)
            if poll_interval is None
            else seconds(poll_interval, "poll_interval"),
            listen=listen,
            shutdown_grace=seconds(shutdown_grace, "shutdown_grace"),
            claim_batch_size=claim_batch_size,
            retry_backoff=retry_backoff or RetryBackoff(),
            reap_interval=seconds(reap_interval, "reap_interval"),
            retention=seconds(retention, "retention"),
            prune_interval=seconds(prune_interval, "prune_interval"),
            unrunnable_job_timeout=None
            if unrunnable_job_timeout is None
            else seconds(unrunnable_job_timeout, "unrunnable_job_timeout"),
            orphan_retries=orphan_retries,
            max_payload_bytes=max_payload_bytes,
            max_result_bytes=max_result_bytes,
            listener_check_interval=seconds(listener_check_interval, "listener_check_interval"),
            listener_check_timeout=seconds(listener_check_timeout, "listener_check_timeout"),
            cancel_wait=seconds(cancel_wait, "cancel_wait"),
            queues=_queue_names(queues),
            process_pool_size=process_pool_size,
            process_max_jobs_per_child=process_max_jobs_per_child,
            process_max_memory_per_child_mb=process_max_memory_per_child_mb,
            http_allowed_hosts=validate_allowed_hosts(http_allowed_hosts),
        )

    @property
    def effective_process_pool_size(self) -> int:
        if self.process_pool_size is not None:
            return self.process_pool_size
        return max(1, min(self.max_concurrent_jobs, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        validate_schema_name(self.schema)
        validate_listen(self.listen)
        _positive_int("max_concurrent_jobs", self.max_concurrent_jobs, maximum=MAX_SLOTS)
        _positive_int("prefetch", self.prefetch, minimum=0, maximum=MAX_SLOTS)
        _positive_int("claim_batch_size", self.claim_batch_size, maximum=INT32_MAX)
        _positive_int("max_payload_bytes", self.max_payload_bytes, maximum=MAX_PAYLOAD_BYTES)
        _positive_int("max_result_bytes", self.max_result_bytes, maximum=MAX_PAYLOAD_BYTES)
        for name in (
            "lease_time",
            "heartbeat_interval",
            "poll_interval",
            "reap_interval",
            "prune_interval",
            "listener_check_interval",
            "listener_check_timeout",
        ):
            validate_seconds(getattr(self, name), name, ConfigurationError)
        for name in ("shutdown_grace", "retention", "cancel_wait", "unrunnable_job_timeout"):
            validate_seconds(getattr(self, name), name, ConfigurationError, allow_zero=True)
        if (
            isinstance(self.orphan_retries, bool)
            or not isinstance(self.orphan_retries, int)
            or not 0 <= self.orphan_retries <= INT32_MAX
        ):
            raise ConfigurationError(f"orphan_retries must be an integer from 0 to {INT32_MAX}")
        if self.queues is not None:
            if not self.queues:
                raise ConfigurationError(
                    "queues must name at least one queue (or be None: 'default' and the"
                    " queues of the registered tasks)"
                )
            for queue in self.queues:
                validate_queue_name(queue, ConfigurationError)
        for name in (
            "process_pool_size",
            "process_max_jobs_per_child",
            "process_max_memory_per_child_mb",
        ):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name), maximum=INT32_MAX)
        if (self.process_pool_size or 0) > self.max_concurrent_jobs:
            raise ConfigurationError(
                f"process_pool_size ({self.process_pool_size}) must be at most"
                f" max_concurrent_jobs ({self.max_concurrent_jobs}): a process job holds one"
                " of those slots while it runs or waits for a child"
            )
        if not isinstance(self.retry_backoff, RetryBackoff):
            raise ConfigurationError(
                f"retry_backoff must be a RetryBackoff, got {self.retry_backoff!r}"
            )
        if self.heartbeat_interval * 2 > self.lease_time:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}s) must be at most half of"
                f" lease_time ({self.lease_time}s), so one lost heartbeat does not cost the"
                " lease"
            )


def seconds(value: float | timedelta, name: str) -> float:
    """A duration setting in seconds: finite, >= 0, at most 1000 years."""
    checked = validate_seconds(value, name, ConfigurationError, allow_zero=True)
    if checked is None:
        raise ConfigurationError(f"{name} must be seconds (a number) or a timedelta, not None")
    return checked


def default_schema() -> str:
    """The schema used when none is given: $SCHEDULER_SCHEMA, else "scheduler"."""
    return os.environ.get(SCHEMA_ENVIRONMENT_VARIABLE) or "scheduler"


def _default_prefetch(slots: object, batch: object, prefetch: int | None) -> int:
    """A claim's batch: how many are actually claimed ahead adapts to how quick the jobs
    are (RunningJobs.room). The config validates all three: a bad `slots` or `batch`
    fails there, whatever this returns."""
    if prefetch is not None:
        return prefetch
    if not isinstance(slots, int) or not isinstance(batch, int):
        return 0
    return min(batch, MAX_SLOTS)


def _queue_names(queues: Sequence[str] | None) -> tuple[str, ...] | None:
    if queues is None:
        return None
    if isinstance(queues, str):  # a lone name would be read as its characters
        return (queues,)
    return tuple(dict.fromkeys(queues))


def _positive_int(
    name: str, value: object, *, minimum: int = 1, maximum: float = float("inf")
) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        limit = "" if maximum == float("inf") else f" and at most {maximum}"
        raise ConfigurationError(f"{name} must be an integer >= {minimum}{limit}, got {value!r}")
