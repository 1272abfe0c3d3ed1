"""scheduler: an embeddable, PostgreSQL-backed, async-first job scheduler."""

from __future__ import annotations

from scheduler.context import JobContext, current_job
from scheduler.errors import (
    ArgumentsNotSerializableError,
    ConfigurationError,
    InvalidJobError,
    InvalidScheduleError,
    InvalidTriggerError,
    JobAlreadyExistsError,
    JobConflictError,
    JobInterruptedError,
    JobIsRunningError,
    JobNotFoundError,
    JobWaitTimeoutError,
    PayloadTooLargeError,
    ScheduleAlreadyExistsError,
    SchedulerError,
    SchedulerNotRunningError,
    SchemaError,
    SchemaNotReadyError,
    SchemaTooNewError,
    TaskNotNameableError,
    TaskNotRegisteredError,
)
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
    SchedulerState,
)
from scheduler.retry import RetryBackoff
from scheduler.scheduler import ScheduleOptions, Scheduler
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
    "AttemptOutcome",
    "CalendarIntervalTrigger",
    "CoalescePolicy",
    "ConfigurationError",
    "ConflictResolution",
    "CronTrigger",
    "DateTrigger",
    "IntervalTrigger",
    "InvalidJobError",
    "InvalidScheduleError",
    "InvalidTriggerError",
    "Job",
    "JobContext",
    "JobAlreadyExistsError",
    "JobConflictError",
    "JobInterruptedError",
    "JobIsRunningError",
    "JobNotFoundError",
    "JobWaitTimeoutError",
    "JobPriority",
    "JobRequest",
    "JobStatus",
    "OrTrigger",
    "PayloadTooLargeError",
    "RetryBackoff",
    "Schedule",
    "ScheduleAlreadyExistsError",
    "ScheduleOptions",
    "Scheduler",
    "SchedulerState",
    "SchedulerError",
    "SchedulerNotRunningError",
    "SchemaError",
    "SchemaNotReadyError",
    "SchemaTooNewError",
    "TaskNotNameableError",
    "TaskNotRegisteredError",
    "Trigger",
    "current_job",
    "task",
]
