"""LISTEN on a dedicated connection, health-checked, re-established after any loss.

Notifications wake the dispatcher ("due <seconds>") and the ticker ("schedule
<seconds>"), and cancel running jobs ("cancel <job id>"). After a reconnect
`on_reconnect` runs, because notifications sent while we were not listening are gone:
the caller catches up from the tables. "finished <job id>" wakes whoever waits for that
job (`wait_for_job`).

Through a pooler in transaction mode LISTEN does not work: the session that listens goes
back to the pooler's pool and its notifications are dropped. So each new connection sends
itself a "probe <token>" notification through the pool; if it does not arrive,
`on_unheard` runs once (the caller polls often instead) and a WARNING names the fix: a
`connect` that opens the connection to the server itself (`Scheduler(listen_dsn=...)`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from scheduler.postgres.connection import acquire
from scheduler.services.loop_backoff import LoopBackoff

logger = logging.getLogger("scheduler.listener")

#: The listener's own connection, when it is not one of the pool's.
Connect = Callable[[], Awaitable["asyncpg.Connection[Any]"]]


class Listener:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        *,
        on_due: Callable[[float], None],
        on_schedule: Callable[[float], None],
        on_cancel: Callable[[str], None],
        on_reconnect: Callable[[], None],
        check_interval: float,
        check_timeout: float,
        on_finished: Callable[[str], None] | None = None,
        connect: Connect | None = None,
        on_unheard: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._connect = connect
        self._on_unheard = on_unheard
        self._probe = f"probe {uuid.uuid4().hex}"
        self._probe_heard = asyncio.Event()
        #: False once a connection's probe did not come back (notifications are lost).
        self.hears_itself: bool | None = None
        self._channel = channel
        self._on_due = on_due
        self._on_schedule = on_schedule
        self._on_cancel = on_cancel
        self._on_reconnect = on_reconnect
        self._on_finished = on_finished
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self.connections_made = 0
        self.server_pid: int | None = None  # of the current LISTEN connection
        # asyncio's queue, not an anyio stream: it is fed from a plain loop callback.
        self._inbox: asyncio.Queue[str] = asyncio.Queue()

    def _receive(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """asyncpg calls this from the event loop, outside any task, where anyio cannot
        tell which async library runs (with sniffio installed it raises): queue the
        payload for `_deliver`, a task, to handle."""
        if payload == self._probe:
            self._probe_heard.set()
        elif isinstance(payload, str):
            self._inbox.put_nowait(payload)

    async def _deliver(self) -> None:
        while True:
            self._handle(await self._inbox.get())

    def _handle(self, payload: str) -> None:
        kind, _, value = payload.partition(" ")
        try:
            if kind == "due":
                self._on_due(float(value))
            elif kind == "schedule":
                self._on_schedule(float(value))
            elif kind == "cancel":
                self._on_cancel(value)
            elif kind == "finished" and self._on_finished is not None:
                self._on_finished(value)
        except Exception:  # a bad payload (hand-written NOTIFY) must not kill the listener
            logger.exception("ignoring notification %r", payload)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as delivery:
            delivery.start_soon(self._deliver)
            await self._listen_forever(task_status)

    async def _listen_forever(self, task_status: TaskStatus[None]) -> None:
        backoff = LoopBackoff(maximum=10.0)
        while True:
            made_before = self.connections_made
            try:
                await self._listen_until_lost(task_status if made_before == 0 else None)
            except Exception as exc:
                if self.connections_made == 0:
                    raise  # the very first connection failed: let start() fail loudly
                logger.warning("listener connection lost (%r); reconnecting", exc)
            if self.connections_made > made_before:
                backoff.reset()  # it worked for a while: reconnect quickly
            await anyio.sleep(backoff.next_delay())

    async def _listen_until_lost(self, task_status: TaskStatus[None] | None) -> None:
        conn = await self._open()
        lost = anyio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(self._channel, self._receive)
            self.connections_made += 1
            self.server_pid = conn.get_server_pid()
            if task_status is not None:
                task_status.started()
            else:
                logger.info("listening again on %s; catching up", self._channel)
                self._on_reconnect()
            if self.hears_itself is None:
                await self._check_delivery(conn)
            while not lost.is_set():
                with anyio.move_on_after(self._check_interval):
                    await lost.wait()
                if lost.is_set():
                    raise ConnectionError("the listener connection was closed")
                # A connection can stop answering without closing (a dropped route, a
                # frozen server): only a round trip with a deadline tells.
                with anyio.fail_after(self._check_timeout):
                    await conn.fetchval("SELECT 1")
                if self.hears_itself is None:  # the first check could not be made
                    await self._check_delivery(conn)
        except anyio.get_cancelled_exc_class():
            # The scheduler is stopping and the connection is healthy: hand it back (the
            # pool's reset UNLISTENs). Aborting it would leave asyncpg a failed future
            # nobody reads ("Future exception was never retrieved").
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self._check_timeout) as waited:
                    try:
                        await conn.remove_listener(self._channel, self._receive)
                    except Exception:  # e.g. cancelled mid health check
                        conn.terminate()
                if waited.cancelled_caught:  # the server does not answer: do not wait on it
                    conn.terminate()
            raise
        except BaseException:
            conn.terminate()  # lost, frozen or broken: never reuse it
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._close(conn)

    async def _open(self) -> Any:
        if self._connect is not None:
            return await self._connect()
        return await acquire(self._pool)  # bounded: a full pool fails start(), not hangs it

    async def _close(self, conn: Any) -> None:
        if self._connect is None:
            await self._pool.release(conn)
        elif not conn.is_closed():
            with anyio.move_on_after(self._check_timeout):
                await conn.close()
            if not conn.is_closed():
                conn.terminate()

    async def _check_delivery(self, conn: Any) -> None:
        """NOTIFY ourselves through the pool, as a peer would. A listening session gets a
        notification before it answers its next statement, so one round trip on `conn`
        after the NOTIFY committed tells (the wait allows for a slow delivery)."""
        self._probe_heard.clear()
        with anyio.move_on_after(self._check_timeout) as waited:
            await self._pool.execute("SELECT pg_notify($1, $2)", self._channel, self._probe)
        if waited.cancelled_caught:
            # The pool had no free connection (or the server did not answer) in time:
            # unknown, not unheard. The next health check of this connection asks again.
            logger.info(
                "could not check within %ss whether notifications reach the listener;"
                " checking again in %ss",
                self._check_timeout,
                self._check_interval,
            )
            return
        with anyio.fail_after(self._check_timeout):  # no answer: a frozen connection
            await conn.fetchval("SELECT 1")
        with anyio.move_on_after(self._check_timeout):
            await self._probe_heard.wait()
        self.hears_itself = self._probe_heard.is_set()
        if not self.hears_itself:
            logger.warning(
                "notifications do not reach this replica's listener (a pooler in transaction"
                " mode, such as PgBouncer, between the pool and PostgreSQL?): polling every"
                " second instead. Pass Scheduler(..., listen_dsn=...) a DSN of the server"
                " itself for wake-ups at once."
            )
            if self._on_unheard is not None:
                self._on_unheard()
