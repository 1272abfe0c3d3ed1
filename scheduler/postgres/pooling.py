"""What a connection pooler between the pool and PostgreSQL breaks, found out at start().

A pooler in transaction mode (PgBouncer's `pool_mode = transaction`) lends each transaction
of a client connection whichever server session is free, and session state stays behind
with the session. The scheduler keeps none between statements: its advisory locks are
transaction-scoped, it changes no setting outside a function's own `SET`, makes no
temporary tables, and its listener checks that notifications reach it (listener.py).
asyncpg's statement cache is session state, though: a statement it prepared on one session
and runs on another fails with `prepared statement "__asyncpg_stmt_N__" does not exist`.
`check_statement_cache` finds that out before anything else runs, and refuses the pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scheduler.errors import ConfigurationError, InvalidDsnError, StatementCacheError
from scheduler.postgres.connection import borrowed
from scheduler.postgres.dsn import normalize_dsn

logger = logging.getLogger("scheduler.postgres")

#: The most start() waits for the check (two connections of the pool, a few round trips).
CHECK_SECONDS = 10.0
#: A pooler lends sessions in its own order (PgBouncer: the one released last first); a
#: few rounds with the roles swapped make a session change certain under LIFO and FIFO.
CHECK_ROUNDS = 3
#: How long one connection holds a session so that the other must run on another one. A
#: pooler with a single server session makes the other wait: after this, it gets it back.
HOLD_SECONDS = 0.5

FIX = (
    "Create the pool with asyncpg.create_pool(..., statement_cache_size=0), or give the"
    " pooler prepared-statement support (PgBouncer 1.21 or later with max_prepared_statements"
    " > 0); and pass Scheduler(..., listen_dsn=...) a DSN of the server itself, so wake-ups"
    " do not go through the pooler either."
)


async def check_statement_cache(pool: asyncpg.Pool) -> None:
    """Raise StatementCacheError if a statement asyncpg prepared on a connection of `pool`
    does not survive a change of server session, as behind PgBouncer in transaction mode
    without prepared-statement support. A direct connection costs one round trip."""
    if pool.get_max_size() < 2:
        await _check_pool_of_one(pool)
        return
    # A pool the application holds fails start() with PoolExhaustedError, as every other
    # step of start() does; only the check's own statements are bounded by CHECK_SECONDS.
    async with borrowed(pool) as first, borrowed(pool) as second:
        try:
            with anyio.fail_after(CHECK_SECONDS):
                if not await _behind_pooler(first):
                    return
                for _ in range(CHECK_ROUNDS):
                    if await _prepared_statement_moved(first, second):
                        return  # it ran on another session: the pooler re-prepares them
                    first, second = second, first
        except asyncpg.InvalidSQLStatementNameError as error:
            raise StatementCacheError(
                "the pool reaches PostgreSQL through a pooler in transaction mode that does not"
                " keep prepared statements, and asyncpg's statement cache is on, so the"
                f" scheduler's statements would fail at random ({error}). {FIX}"
            ) from None
        except TimeoutError:
            logger.warning(
                "could not check within %.0fs whether the pool's prepared statements survive a"
                " connection pooler (the pool is busy?); if it goes through PgBouncer in"
                " transaction mode: %s",
                CHECK_SECONDS,
                FIX,
            )


async def _check_pool_of_one(pool: asyncpg.Pool) -> None:
    """A pool of one (a poll-only replica) cannot make its statements change session: behind
    a pooler it is refused unless its statement cache is off, the one setting that works
    whatever the pooler does with prepared statements."""
    async with borrowed(pool) as conn:
        with anyio.fail_after(CHECK_SECONDS):
            if not await _behind_pooler(conn) or not _statement_cache_on(conn):
                return
    raise StatementCacheError(
        "the pool reaches PostgreSQL through a pooler and asyncpg's statement cache is on;"
        " on a pool of one connection the scheduler cannot check that prepared statements"
        " survive the pooler's change of server session, and in transaction mode without"
        " prepared-statement support they fail at random. Create the pool with"
        " asyncpg.create_pool(..., statement_cache_size=0)."
    )


def _statement_cache_on(conn: PoolConnectionProxy[Any]) -> bool:
    # asyncpg keeps the statement_cache_size the connection was opened with only in its
    # cache (no public accessor); unknown: assume on, the case that must be checked.
    raw = getattr(conn, "_con", conn)
    cache = getattr(raw, "_stmt_cache", None)
    get_max_size = getattr(cache, "get_max_size", None)
    return not callable(get_max_size) or bool(get_max_size())


async def _behind_pooler(conn: PoolConnectionProxy[Any]) -> bool:
    # A pooler answers the startup with a process id of its own, not the server session's.
    backend_pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return conn.get_server_pid() != backend_pid


async def _prepared_statement_moved(
    first: PoolConnectionProxy[Any], second: PoolConnectionProxy[Any]
) -> bool:
    """Prepare on `first`, then run it while `second` holds the session `first` last had.
    True if it ran on another session; raises InvalidSQLStatementNameError if it was lost."""
    statement = await first.prepare("SELECT pg_backend_pid()")
    prepared_on = await statement.fetchval()
    async with second.transaction():
        await second.execute("SELECT 1")  # it takes a session: under LIFO, first's last
        running = asyncio.ensure_future(statement.fetchval())
        try:
            await asyncio.wait({running}, timeout=HOLD_SECONDS)
        except BaseException:
            running.cancel()
            raise
    ran_on = await running
    return bool(ran_on != prepared_on)


def validate_listen_dsn(dsn: object) -> str | None:
    """`Scheduler(listen_dsn=...)`: None, or a DSN of the server itself, read like every
    other DSN (a URL or libpq keywords: `scheduler.postgres.dsn`), checked here rather than
    at the first connect so that a typo fails at construction and says what is expected."""
    if dsn is None:
        return None
    expected = (
        "listen_dsn must be a PostgreSQL URL of the server itself (not of a pooler in"
        " transaction mode), such as 'postgresql://user:password@db-host:5432/dbname'"
    )
    if not isinstance(dsn, str):
        raise ConfigurationError(f"{expected}; got a {type(dsn).__name__}")
    if not dsn.strip():
        raise ConfigurationError(f"{expected}; got an empty string")
    try:
        return normalize_dsn(dsn)
    except InvalidDsnError as error:
        raise InvalidDsnError(f"{expected}: {error}") from None
