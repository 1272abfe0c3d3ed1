"""One LISTEN shared by every `wait_for_job()` of a scheduler that does not run (a producer),
open only while some wait is in progress.

A started scheduler hears 'finished <job id>' on its own listener. A producer has none, and
one connection per wait would starve the pool: N waits on a pool of N each held their LISTEN
connection and waited for a second one to read the job, for ever. Here the first wait opens
one listening connection in a task of its own (so a wait that times out never cancels what
the others rely on), and the last wait to end closes it. Waits never block on it: until it
listens, and after it is lost, they poll; each time it (re)starts listening every wait looks
at its job once, since notifications sent before were not heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
import asyncpg

from scheduler.postgres.listener import Listener
from scheduler.services.loop_backoff import LoopBackoff

logger = logging.getLogger("scheduler.listener")

Callbacks = tuple[Callable[[str], None], Callable[[], None]]


def _ignore(_value: object) -> None:
    """A producer runs no jobs: due, schedule and cancel notifications are not its business."""


class SharedWaitListener:
    def __init__(
        self, pool: asyncpg.Pool, channel: str, *, check_interval: float, check_timeout: float
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        # Who is waiting, with how many waits each: (on_finished, on_listening) -> count.
        self._subscribers: dict[Callbacks, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # handing their connection back

    @property
    def usable(self) -> bool:
        """A pool of one connection cannot spare it for a LISTEN: waits then only poll."""
        return self._pool.get_max_size() >= 2

    @contextlib.asynccontextmanager
    async def subscribed(
        self, on_finished: Callable[[str], None], on_listening: Callable[[], None]
    ) -> AsyncIterator[None]:
        """While entered, `on_finished(job_id)` hears finished jobs and `on_listening()` is
        called whenever listening (re)starts. Returns at once: nothing here waits for the
        connection."""
        key = (on_finished, on_listening)
        self._subscribers[key] = self._subscribers.get(key, 0) + 1
        if self.usable and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"scheduler-wait-listener-{self._channel}"
            )
        try:
            yield
        finally:
            left = self._subscribers[key] - 1
            if left:
                self._subscribers[key] = left
            else:
                del self._subscribers[key]
            if not self._subscribers and self._task is not None:
                self._stop(self._task)
                self._task = None  # a wait starting meanwhile opens a new one

    def _stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()  # the listener hands its connection back, shielded
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop listening now, even with waits in progress (they go on polling)."""
        if self._task is not None:
            self._stop(self._task)
            self._task = None
        if self._closing:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._check_timeout + 1):
                await asyncio.gather(*self._closing, return_exceptions=True)

    def _finished(self, job_id: str) -> None:
        for on_finished, _ in list(self._subscribers):
            on_finished(job_id)

    def _listening(self) -> None:
        for _, on_listening in list(self._subscribers):
            on_listening()

    async def _run(self) -> None:
        backoff = LoopBackoff(maximum=10.0)
        while self._subscribers:
            listener = Listener(
                self._pool,
                self._channel,
                on_due=_ignore,
                on_schedule=_ignore,
                on_cancel=_ignore,
                on_reconnect=self._listening,
                check_interval=self._check_interval,
                check_timeout=self._check_timeout,
                on_finished=self._finished,
            )
            try:
                async with anyio.create_task_group() as listening:
                    await listening.start(listener.run)
                    self._listening()
                    backoff.reset()
            except Exception as exc:
                # E.g. the pool is exhausted or the database is away: waits poll, and
                # listening is tried again.
                logger.warning("cannot listen for finished jobs (%r); waits poll", exc)
            await anyio.sleep(backoff.next_delay())
