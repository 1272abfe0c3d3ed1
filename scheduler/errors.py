"""The exception hierarchy. Every error the library raises on purpose derives from
`SchedulerError`; input errors also derive from `ValueError` so generic handlers work."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of every error raised by `scheduler`."""


class ConfigurationError(SchedulerError, ValueError):
    """A setting is invalid: a `Scheduler` option (for example a hostile schema name), a
    task definition (`@task`, `register()`: its defaults, or a name another callable has)
    or a `RetryBackoff`."""


class InvalidDsnError(ConfigurationError):
    """A connection string is not one PostgreSQL (through asyncpg) can use: a scheme other
    than postgresql://, a port that is not a number, an unknown libpq keyword. The message
    shows the forms that work."""


class StatementCacheError(ConfigurationError):
    """The pool reaches PostgreSQL through a pooler that does not keep prepared statements
    between transactions (PgBouncer in transaction mode before 1.21, or without
    `max_prepared_statements`), and asyncpg's statement cache is on: its cached statements
    would fail at random. `start()` raises it; create the pool with
    `statement_cache_size=0`, or give PgBouncer prepared-statement support."""


class InvalidJobError(SchedulerError, ValueError):
    """`schedule()` was given something it cannot store; nothing was written."""


class ArgumentsNotSerializableError(InvalidJobError):
    """Job arguments are not plain JSON (dict/list/str/int/float/bool/None)."""


class PayloadTooLargeError(InvalidJobError):
    """The JSON-encoded arguments exceed the configured cap."""


class UnknownDependencyError(InvalidJobError):
    """`depends_on` names a job that does not exist (never scheduled, or pruned)."""


class TaskNotNameableError(InvalidJobError):
    """A callable has no stable importable name (lambda, closure, partial, instance)."""


class TaskNotRegisteredError(SchedulerError, LookupError):
    """A task name is not registered on this replica."""


class JobConflictError(SchedulerError):
    """A custom `job_id` collides with an existing job."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobAlreadyExistsError(JobConflictError):
    """`ConflictResolution.RAISE` met an existing job with the same id."""


class JobIsRunningError(JobConflictError):
    """`ConflictResolution.REPLACE` met a job that is running right now."""


class UniqueKeyConflictError(JobConflictError):
    """`ConflictResolution.RAISE` met an unfinished job holding the same `unique_key`
    (`job_id` names that job), or REPLACE could not take the key."""


class ScheduleAlreadyExistsError(SchedulerError):
    """`add_schedule()` with `ConflictResolution.RAISE` met an existing schedule id."""

    def __init__(self, message: str, schedule_id: str) -> None:
        super().__init__(message)
        self.schedule_id = schedule_id


class SchemaError(SchedulerError):
    """The database schema is missing or of a version this code does not know."""


class SchemaNotReadyError(SchemaError):
    """The scheduler's tables do not exist yet: run migrations first."""


class SchemaTooNewError(SchemaError):
    """The database was migrated by a newer release of `scheduler`."""


class SchemaFunctionsMismatchError(SchemaNotReadyError):
    """The schema's tables are current but its SQL functions and views are not the ones this
    release ships (a release that changed only function bodies): run migrations."""


class JobInterruptedError(SchedulerError):
    """Raised inside a job by `current_job().raise_if_cancelled()` once its attempt was asked
    to stop; the attempt is recorded for what stopped it."""


class SchedulerNotRunningError(SchedulerError, RuntimeError):
    """An operation needs a started scheduler (or one that is not shut down)."""


class SchedulerStoppedError(SchedulerNotRunningError):
    """`start()` on a scheduler that was shut down (or failed): a `Scheduler` starts once;
    create a new one."""


class SchedulerAlreadyRunningError(SchedulerError, RuntimeError):
    """`start()` on a scheduler already starting, running or stopping."""


class InvalidScheduleError(SchedulerError, ValueError):
    """`add_schedule()` (or a schedule declaration) was given something it cannot store;
    nothing was written."""


class InvalidTriggerError(InvalidScheduleError):
    """A trigger cannot be built: a bad cron expression, an unknown time zone, an empty
    interval, or a combination that can never fire."""


class JobNotFoundError(SchedulerError, LookupError):
    """No job has this id (it never existed, or it was pruned after the retention period)."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobWaitTimeoutError(SchedulerError, TimeoutError):
    """`wait_for_job()` gave up: the job had not finished within the timeout (it goes on)."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class PoolExhaustedError(SchedulerError, TimeoutError):
    """No connection of the application's pool became free in time: every one is held
    elsewhere. Enlarge the pool, or hold its connections for shorter."""


class JobNotRetryableError(SchedulerError):
    """`retry_job()` met a job that is not failed or cancelled (pending, running, or
    succeeded: schedule it again with `ConflictResolution.REPLACE` to rerun a success), or
    one whose unique key another unfinished job holds now."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id
