"""scheduler: an embeddable, PostgreSQL-backed, async-first job scheduler."""

from __future__ import annotations

from scheduler.context import JobContext, current_job
from scheduler.errors import (
    ArgumentsNotSerializableError,
    ConfigurationError,
    InvalidJobError,
    JobAlreadyExistsError,
    JobConflictError,
    JobIsRunningError,
    PayloadTooLargeError,
    SchedulerError,
    SchedulerNotRunningError,
    SchemaError,
    SchemaNotReadyError,
    SchemaTooNewError,
    TaskNotNameableError,
    TaskNotRegisteredError,
)
from scheduler.models import ConflictResolution, Job, JobPriority, JobRequest, JobStatus
from scheduler.retry import RetryBackoff
from scheduler.scheduler import Scheduler
from scheduler.tasks import task

__version__ = "0.1.0"

__all__ = [
    "ArgumentsNotSerializableError",
    "ConfigurationError",
    "ConflictResolution",
    "InvalidJobError",
    "Job",
    "JobContext",
    "JobAlreadyExistsError",
    "JobConflictError",
    "JobIsRunningError",
    "JobPriority",
    "JobRequest",
    "JobStatus",
    "PayloadTooLargeError",
    "RetryBackoff",
    "Scheduler",
    "SchedulerError",
    "SchedulerNotRunningError",
    "SchemaError",
    "SchemaNotReadyError",
    "SchemaTooNewError",
    "TaskNotNameableError",
    "TaskNotRegisteredError",
    "current_job",
    "task",
]
