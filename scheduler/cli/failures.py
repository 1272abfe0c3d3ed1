"""What the CLI prints for an error: one line that says what to do, and the exit code.

2 is a usage error (the command line, the DSN, an option value, a module to import, input
the library refuses, a schema not migrated); 1 a runtime failure (the database cannot be
reached or refuses the login, a server error, something unexpected)."""

from __future__ import annotations

import asyncio
import logging
import socket

import asyncpg

from scheduler.errors import JobNotFoundError, SchedulerError

USAGE = 2
RUNTIME = 1

logger = logging.getLogger("scheduler.cli")


class CommandFailed(Exception):
    """A command could not do its work; the message is the line to print (exit code 1)."""


def explain(exc: BaseException, target: str) -> tuple[str, int]:
    """The one line to print for `exc` and the exit code; `target` names the server
    (host:port/dbname) the DSN points at."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]  # a task group's first error
    where = f"PostgreSQL at {target}"
    if isinstance(exc, JobNotFoundError):
        return _one_line(exc), RUNTIME  # as `show` of an unknown job: not a usage error
    if isinstance(exc, SchedulerError):
        return _one_line(exc), USAGE
    if isinstance(exc, CommandFailed):
        return _one_line(exc), RUNTIME
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return f"invalid DSN: {_one_line(exc)}", USAGE
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return (
            f"{where} refused the login ({_one_line(exc)}): check the user and password in"
            " --dsn / $SCHEDULER_DSN (or PGPASSWORD, ~/.pgpass)",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return (
            f"{where} refused the login ({_one_line(exc)}): check the user in --dsn /"
            " $SCHEDULER_DSN, or create the role, or allow it in pg_hba.conf",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (
            f"{where}: {_one_line(exc)}: check the database name in --dsn / $SCHEDULER_DSN,"
            " or create it (createdb)",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return (
            f"{_one_line(exc)}: the role lacks a grant; connect as a role that has it"
            " (see `scheduler doctor`)",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return (
            f"{where}: {_one_line(exc)}: the server is at max_connections; try again, or"
            " lower pool sizes (see `scheduler doctor`)",
            RUNTIME,
        )
    if isinstance(exc, asyncpg.PostgresError):
        return f"{where} answered with an error: {_one_line(exc)}", RUNTIME
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot resolve the host of {target} ({exc.strerror}): check the host in --dsn /"
            " $SCHEDULER_DSN",
            RUNTIME,
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{where} refused the connection: check that the server runs and the host and"
            " port in --dsn / $SCHEDULER_DSN",
            RUNTIME,
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return (
            f"{where} did not answer in time: check the host, port and firewall in --dsn /"
            " $SCHEDULER_DSN",
            RUNTIME,
        )
    if isinstance(exc, (OSError, asyncpg.InterfaceError)):
        return (
            f"cannot talk to {where} ({_one_line(exc) or type(exc).__name__}): check the"
            " server and --dsn / $SCHEDULER_DSN",
            RUNTIME,
        )
    logger.debug("unexpected error", exc_info=exc)
    return (
        f"unexpected error {type(exc).__name__}: {_one_line(exc)} (a bug: please report it;"
        " --log-level DEBUG shows the traceback)",
        RUNTIME,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
