"""Connection types (a plain asyncpg connection or one borrowed from a pool), and a pooled
transaction that ends cleanly however it is interrupted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

AnyConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: How long rolling back an interrupted transaction may take; a connection that cannot
#: roll back within it is closed instead of going back to the pool.
ROLLBACK_SECONDS = 5.0


@contextlib.asynccontextmanager
async def pooled_transaction(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy[Any]]:
    """A connection from `pool` inside a transaction, committed when the block ends.

    On cancellation asyncpg's own rollback runs inside the cancelled scope and is cancelled
    in turn, so the pool gets the connection back mid-transaction and logs `Resetting
    connection with an active transaction` at ERROR. Here such a rollback is retried
    shielded from the cancellation, for at most ROLLBACK_SECONDS."""
    async with pool.acquire() as conn:
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
