"""`Scheduler("postgresql://...")`: the pool a scheduler creates from a DSN and owns.

The pool is opened on first use (a `Scheduler` may be built where no event loop runs yet)
and closed by `shutdown()`. Its size keeps promise 11 (connection economy): at most
`OWNED_POOL_MAX_SIZE` connections, and an idle replica shrinks back to the listener's
connection plus `OWNED_POOL_MIN_SIZE` after `OWNED_POOL_IDLE_SECONDS`. Completions and
claims are batched, so the size does not grow with `max_concurrent_jobs`; jobs that need
the database bring their own pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import TracebackType
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scheduler.errors import ConfigurationError, SchedulerNotRunningError
from scheduler.postgres.dsn import normalize_dsn

OWNED_POOL_MIN_SIZE = 1
OWNED_POOL_MAX_SIZE = 10
#: Connections idle this long are closed (asyncpg's default is 300 s).
OWNED_POOL_IDLE_SECONDS = 60.0


def pool_for(db_pool: object) -> tuple[asyncpg.Pool, bool]:
    """The pool to use for what `Scheduler(db_pool)` was given, and whether the scheduler
    owns it (and so closes it at shutdown)."""
    if isinstance(db_pool, str):
        # DsnPool offers the part of asyncpg.Pool's interface the scheduler uses.
        return cast(asyncpg.Pool, DsnPool(normalize_dsn(db_pool))), True
    if callable(getattr(db_pool, "acquire", None)):
        return cast(asyncpg.Pool, db_pool), False
    raise ConfigurationError(
        f"db_pool must be an asyncpg pool (await asyncpg.create_pool(...)) or a DSN string"
        f" such as 'postgresql://user@host:5432/dbname', got {type(db_pool).__name__}"
    )


class DsnPool:
    """An asyncpg pool opened from a DSN when first used."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()  # binds to the loop on first use
        self._closed = False

    async def open(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._closed:
                    raise SchedulerNotRunningError(
                        "the scheduler was shut down and closed the pool it created from"
                        " its DSN; create a new Scheduler"
                    )
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=OWNED_POOL_MIN_SIZE,
                        max_size=OWNED_POOL_MAX_SIZE,
                        max_inactive_connection_lifetime=OWNED_POOL_IDLE_SECONDS,
                    )
        return self._pool

    def acquire(self, *, timeout: float | None = None) -> _Acquire:
        return _Acquire(self, timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        await (await self.open()).release(connection, timeout=timeout)

    async def execute(self, query: str, *args: Any, **options: Any) -> str:
        return await (await self.open()).execute(query, *args, **options)

    async def executemany(self, query: str, args: Any, **options: Any) -> None:
        await (await self.open()).executemany(query, args, **options)

    async def fetch(self, query: str, *args: Any, **options: Any) -> list[Any]:
        rows: list[Any] = await (await self.open()).fetch(query, *args, **options)
        return rows

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        return await (await self.open()).fetchrow(query, *args, **options)

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        return await (await self.open()).fetchval(query, *args, **options)

    def get_size(self) -> int:
        return 0 if self._pool is None else self._pool.get_size()

    def get_idle_size(self) -> int:
        return 0 if self._pool is None else self._pool.get_idle_size()

    def get_max_size(self) -> int:
        return OWNED_POOL_MAX_SIZE

    def get_min_size(self) -> int:
        return OWNED_POOL_MIN_SIZE

    def is_closing(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the pool (idempotent: shutdown() may be called again)."""
        async with self._opening:
            if self._closed:
                return
            self._closed = True
            if self._pool is not None:
                await self._pool.close()


class _Acquire:
    """`async with pool.acquire() as conn` and `conn = await pool.acquire()`, as asyncpg."""

    def __init__(self, owner: DsnPool, timeout: float | None) -> None:
        self._owner, self._timeout = owner, timeout
        self._connection: PoolConnectionProxy[Any] | None = None

    async def _acquire(self) -> PoolConnectionProxy[Any]:
        pool = await self._owner.open()
        return cast("PoolConnectionProxy[Any]", await pool.acquire(timeout=self._timeout))

    def __await__(self) -> Generator[Any, None, PoolConnectionProxy[Any]]:
        return self._acquire().__await__()

    async def __aenter__(self) -> PoolConnectionProxy[Any]:
        self._connection = await self._acquire()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._owner.release(connection)
