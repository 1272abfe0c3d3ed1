"""Connection types (a plain asyncpg connection or one borrowed from a pool), borrowing with
a deadline, and a pooled transaction that ends cleanly however it is interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scheduler.errors import PoolExhaustedError

logger = logging.getLogger("scheduler.postgres")

AnyConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: How long rolling back an interrupted transaction may take; a connection that cannot
#: roll back within it is closed instead of going back to the pool.
ROLLBACK_SECONDS = 5.0
#: How long handing a connection back (the pool's reset query) may take before the pool
#: closes it instead.
RELEASE_SECONDS = 5.0
#: How long anything the package does may wait for a connection from the application's
#: pool. asyncpg's own `pool.fetch()` and `pool.acquire()` wait for ever: a pool whose every
#: connection is held (by the application, or by a LISTEN) would hang the caller.
ACQUIRE_SECONDS = 30.0


async def acquire(pool: asyncpg.Pool, timeout: float | None = None) -> PoolConnectionProxy[Any]:
    """A connection from `pool` within `timeout` seconds (default ACQUIRE_SECONDS), else
    `PoolExhaustedError`."""
    if timeout is None:
        timeout = ACQUIRE_SECONDS
    try:
        conn: PoolConnectionProxy[Any] = await pool.acquire(timeout=timeout)
    except asyncio.TimeoutError:
        raise PoolExhaustedError(
            f"no connection of the pool became free within {timeout:g} s (all"
            f" {pool.get_max_size()} in use); enlarge the pool (max_size) or hold its"
            " connections for shorter"
        ) from None
    return conn


@contextlib.asynccontextmanager
async def borrowed(
    pool: asyncpg.Pool, timeout: float | None = None
) -> AsyncIterator[PoolConnectionProxy[Any]]:
    """`async with pool.acquire()`, with a deadline on the acquire."""
    conn = await acquire(pool, timeout)
    try:
        yield conn
    finally:
        await pool.release(conn)


class BoundedPool:
    """The statements of `asyncpg.Pool` (`fetch`, `fetchrow`, `fetchval`, `execute`), each
    waiting at most `timeout` seconds for its connection."""

    def __init__(self, pool: asyncpg.Pool, timeout: float | None = None) -> None:
        self.pool = pool
        self.timeout = timeout

    def acquire(self) -> contextlib.AbstractAsyncContextManager[PoolConnectionProxy[Any]]:
        return borrowed(self.pool, self.timeout)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with borrowed(self.pool, self.timeout) as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with borrowed(self.pool, self.timeout) as conn:
            row: asyncpg.Record | None = await conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with borrowed(self.pool, self.timeout) as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with borrowed(self.pool, self.timeout) as conn:
            status: str = await conn.execute(query, *args)
            return status


@contextlib.asynccontextmanager
async def pooled_transaction(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy[Any]]:
    """A connection from `pool` inside a transaction, committed when the block ends.

    On cancellation asyncpg's own rollback runs inside the cancelled scope and is cancelled
    in turn, so the pool gets the connection back mid-transaction and logs `Resetting
    connection with an active transaction` at ERROR. Here such a rollback is retried
    shielded from the cancellation, for at most ROLLBACK_SECONDS."""
    async with borrowed(pool) as conn:
        try:
            async with conn.transaction():
                yield conn
        except BaseException:
            if conn.is_in_transaction():
                await _roll_back_or_close(conn)
            raise


async def _roll_back_or_close(conn: PoolConnectionProxy[Any]) -> None:
    # Errors are suppressed: the one that interrupted the transaction is the one to raise.
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(ROLLBACK_SECONDS),
        contextlib.suppress(Exception),
    ):
        await conn.execute("ROLLBACK")
    if conn.is_in_transaction():
        conn.terminate()  # the pool replaces a closed connection without a reset


class KeptConnections:
    """Connections borrowed from the application's pool and kept a moment between the
    statements of the per-job path (claims, outcomes, single enqueues).

    Each `pool.fetch()` costs two round trips: the statement, then on release the pool's
    reset query (`RESET ALL; UNLISTEN *; ...`). These statements leave no session state
    behind, so a connection one of them just used serves the next as it is. At most `keep`
    connections are kept, each handed back (and reset by the pool as usual) once unused
    for `idle` seconds, or at `release_all()`. A connection whose statement raised, or that
    is left inside a transaction, goes straight back to the pool.
    """

    def __init__(self, pool: asyncpg.Pool, *, keep: int = 2, idle: float = 0.5) -> None:
        self._pool = pool
        self._keep = keep
        self._idle = idle
        self._kept: list[tuple[PoolConnectionProxy[Any], float]] = []  # (conn, last used)
        self._trim_timer: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self._take()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except asyncio.CancelledError:
            # Interrupted mid-statement (a deadline): the connection is in an unknown state
            # and its reset could wait on a dead socket. Close it and go on at once; the
            # pool opens another when needed.
            conn.terminate()
            self._release_soon(conn)
            raise
        except BaseException:
            await self._pool.release(conn, timeout=RELEASE_SECONDS)
            raise
        self._put_back(conn)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return None if row is None else row[0]

    async def _take(self) -> PoolConnectionProxy[Any]:
        while self._kept:
            kept, _ = self._kept.pop()
            try:
                if not kept.is_closed():
                    return kept
            except asyncpg.InterfaceError:
                continue  # the server closed it and the pool has already taken it back
            await self._pool.release(kept)  # closed meanwhile: the pool replaces it
        return await acquire(self._pool)

    def _put_back(self, conn: PoolConnectionProxy[Any]) -> None:
        pool = self._pool
        # Never keep one while the pool is exhausted: whoever waits for a connection (the
        # heartbeat, the application) must get it, not wait behind our next statement.
        exhausted = pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size()
        if (
            exhausted
            or len(self._kept) >= self._keep
            or conn.is_in_transaction()
            or conn.is_closed()
        ):
            self._release_soon(conn)
            return
        loop = asyncio.get_running_loop()
        self._kept.append((conn, loop.time()))
        if self._trim_timer is None:
            self._trim_timer = loop.call_later(self._idle, self._trim)

    def _trim(self) -> None:
        self._trim_timer = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._idle
        stale = [conn for conn, used in self._kept if used <= cutoff]
        self._kept = [(conn, used) for conn, used in self._kept if used > cutoff]
        for conn in stale:
            self._release_soon(conn)
        if self._kept:
            oldest = min(used for _, used in self._kept)
            self._trim_timer = loop.call_at(oldest + self._idle, self._trim)

    def _release_soon(self, conn: PoolConnectionProxy[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._pool.release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        # A connection a database restart broke fails its reset; the pool has closed it
        # and opens another when needed. Nothing to do but not leave the error unread.
        if not task.cancelled() and task.exception() is not None:
            logger.debug("a kept connection failed its reset: %r", task.exception())

    async def release_all(self) -> None:
        """Hand every kept connection back to the pool now (a scheduler shutting down)."""
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        kept, self._kept = self._kept, []
        for conn, _ in kept:
            self._release_soon(conn)
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
