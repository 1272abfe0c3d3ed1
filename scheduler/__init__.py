"""scheduler: an embeddable, PostgreSQL-backed, async-first job scheduler."""

from __future__ import annotations

from scheduler.context import JobContext, Snooze, current_job
from scheduler.errors import (
    ArgumentsNotSerializableError,
    ConfigurationError,
    InvalidDsnError,
    InvalidJobError,
    InvalidScheduleError,
    InvalidTriggerError,
    JobAlreadyExistsError,
    JobConflictError,
    JobInterruptedError,
    JobIsRunningError,
    JobNotFoundError,
    JobNotRetryableError,
    JobWaitTimeoutError,
    PayloadTooLargeError,
    PoolExhaustedError,
    ScheduleAlreadyExistsError,
    SchedulerAlreadyRunningError,
    SchedulerError,
    SchedulerNotRunningError,
    SchedulerStoppedError,
    SchemaError,
    SchemaFunctionsMismatchError,
    SchemaNotReadyError,
    SchemaTooNewError,
    StatementCacheError,
    TaskNotNameableError,
    TaskNotRegisteredError,
    UniqueKeyConflictError,
    UnknownDependencyError,
)
from scheduler.events import EventHandler, EventKind, JobEvent
from scheduler.executors.http import HTTP_TASK, http_request
from scheduler.extensions import Extension, QueueDepth, ReplicaState
from scheduler.flow import Limits, QueueStats, TaskLimits
from scheduler.health import Health
from scheduler.limits import Limit, StoredLimit
from scheduler.limits.concurrency import ConcurrencyLimit
from scheduler.limits.rate import RateLimit
from scheduler.middleware import AttemptInfo, CallNext, Middleware
from scheduler.models import (
    Attempt,
    AttemptOutcome,
    CoalescePolicy,
    ConflictResolution,
    Job,
    JobPriority,
    JobRequest,
    JobStatus,
    Schedule,
    ScheduleOptions,
    SchedulerState,
)
from scheduler.retry_backoff import RetryBackoff
from scheduler.scheduler import Scheduler
from scheduler.sync import SyncProducer
from scheduler.tasks import task
from scheduler.triggers import (
    AndTrigger,
    CalendarIntervalTrigger,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    OrTrigger,
    Trigger,
)

__version__ = "0.1.0"

__all__ = [
    "AndTrigger",
    "ArgumentsNotSerializableError",
    "Attempt",
    "AttemptInfo",
    "AttemptOutcome",
    "CalendarIntervalTrigger",
    "CallNext",
    "CoalescePolicy",
    "ConfigurationError",
    "ConcurrencyLimit",
    "ConflictResolution",
    "HTTP_TASK",
    "Health",
    "CronTrigger",
    "DateTrigger",
    "EventHandler",
    "EventKind",
    "Extension",
    "IntervalTrigger",
    "InvalidDsnError",
    "InvalidJobError",
    "InvalidScheduleError",
    "InvalidTriggerError",
    "Job",
    "JobContext",
    "JobAlreadyExistsError",
    "JobConflictError",
    "JobEvent",
    "JobInterruptedError",
    "JobIsRunningError",
    "JobNotFoundError",
    "JobNotRetryableError",
    "JobWaitTimeoutError",
    "JobPriority",
    "JobRequest",
    "JobStatus",
    "Limit",
    "Limits",
    "Middleware",
    "OrTrigger",
    "PayloadTooLargeError",
    "PoolExhaustedError",
    "QueueDepth",
    "QueueStats",
    "RateLimit",
    "ReplicaState",
    "RetryBackoff",
    "Schedule",
    "ScheduleAlreadyExistsError",
    "ScheduleOptions",
    "Scheduler",
    "SchedulerState",
    "Snooze",
    "SyncProducer",
    "SchedulerError",
    "SchedulerAlreadyRunningError",
    "SchedulerNotRunningError",
    "SchedulerStoppedError",
    "SchemaError",
    "SchemaFunctionsMismatchError",
    "SchemaNotReadyError",
    "SchemaTooNewError",
    "StatementCacheError",
    "TaskNotNameableError",
    "StoredLimit",
    "TaskLimits",
    "TaskNotRegisteredError",
    "Trigger",
    "UnknownDependencyError",
    "UniqueKeyConflictError",
    "current_job",
    "http_request",
    "task",
]
