"""A re-armable wake-up signal with a deadline: the dispatcher's alarm clock."""

from __future__ import annotations

import math

import anyio


class Wakeup:
    """`wait()` returns when `set()` was called or the earliest armed deadline passed.

    Deadlines are in anyio's monotonic clock; they come from delays measured by the
    database (time until a job is due), never from comparing wall clocks.
    """

    def __init__(self) -> None:
        self._fired = False
        self._deadline = math.inf
        self._changed = anyio.Event()

    def set(self) -> None:
        self._fired = True
        self._changed.set()

    def arm_in(self, delay: float) -> None:
        if delay <= 0:
            self.set()
            return
        deadline = anyio.current_time() + delay
        if deadline < self._deadline:
            self._deadline = deadline
            self._changed.set()  # a waiter recomputes its timeout

    async def wait(self, max_wait: float) -> None:
        give_up = anyio.current_time() + max_wait
        while not self._fired:
            timeout = min(self._deadline, give_up) - anyio.current_time()
            if timeout <= 0:
                break
            with anyio.move_on_after(timeout):
                await self._changed.wait()
            self._changed = anyio.Event()
        self._fired = False
        self._deadline = math.inf
