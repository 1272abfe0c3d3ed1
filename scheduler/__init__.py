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
    PayloadTooLargeError,
    ScheduleAlreadyExistsError,
    SchedulerError,
    SchedulerNotRunningError,
    SchemaError,
    SchemaNotReadyError,
    SchemaTooNewError,
    TaskNotNameableError,
    TaskNotRegisteredError,
    UniqueKeyConflictError,
)
from scheduler.flow import Limits, QueueStats, TaskLimits
from scheduler.models import (
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
    "JobPriority",
    "JobRequest",
    "JobStatus",
    "Limits",
    "OrTrigger",
    "PayloadTooLargeError",
    "QueueStats",
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
    "TaskLimits",
    "TaskNotRegisteredError",
    "Trigger",
    "UniqueKeyConflictError",
    "current_job",
    "task",
]
