"""Group commit for job completions.

With durable settings every commit waits for a WAL flush, so one commit per finished job
caps throughput at the flush rate. Two ways share commits:

* completions that arrive while a write is in flight wait and go together in the next
  statement (no added latency when idle; the first waiter of a batch writes it);
* while a backlog lasts (`hold` is on), completions wait up to `max_hold` seconds for the
  dispatcher's next claim, which carries them in the same statement (`take` / `settle`):
  one commit both records finished jobs and claims their successors.

There is no background task: a waiter that is not carried in time writes itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from scheduler.store import Lease

#: What one completion carries: a lease, or a lease with more (a success's result).
L = TypeVar("L", bound=Lease)


@dataclass(eq=False)
class _Waiter(Generic[L]):
    lease: L
    done: bool = False
    written: bool = False
    in_flight: bool = False
    error: BaseException | None = None
    #: Its caller gave up waiting: if a carrier hands it back, it is not queued again.
    abandoned: bool = False


@dataclass
class CompletionBatcher(Generic[L]):
    """`complete(lease)` returns whether that attempt's success was written (fenced).

    Plain asyncio events (no cancel scopes): this runs once per finished job."""

    write: Callable[[Sequence[L]], Awaitable[set[str]]]
    max_batch: int = 500
    max_hold: float = 0.05
    _queue: list[_Waiter[L]] = field(default_factory=list)
    _writing: bool = False
    _settled: asyncio.Event | None = None
    _hold: bool = False
    #: Held completions wait on this together; set when a claim takes them, when the hold
    #: ends, or `max_hold` after the first of them arrived (one timer per group).
    _held: asyncio.Event | None = None
    _held_timer: asyncio.TimerHandle | None = None

    @property
    def hold(self) -> bool:
        return self._hold

    @hold.setter
    def hold(self, value: bool) -> None:
        self._hold = value
        if not value:  # nobody will carry them now: let the held waiters write
            self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.set()
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    async def complete(self, lease: L) -> bool:
        waiter = _Waiter(lease)
        self._queue.append(waiter)
        try:
            if self._hold:
                held = self._held
                if held is None:
                    held = self._held = asyncio.Event()
                    loop = asyncio.get_running_loop()
                    self._held_timer = loop.call_later(self.max_hold, self._release_held)
                await held.wait()
            while not waiter.done:
                if waiter.in_flight or self._writing:
                    if self._settled is None:
                        self._settled = asyncio.Event()
                    await self._settled.wait()
                else:
                    await self._write_next_batch()
        except BaseException:
            # Given up (the runner's fence deadline): a success not yet sent is withdrawn,
            # not written later behind the caller's back by the next batch or claim. One
            # in flight may still commit with its carrier; if that carrier is cancelled,
            # it is not queued again (settle).
            waiter.abandoned = True
            if not waiter.done and not waiter.in_flight and waiter in self._queue:
                self._queue.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.written

    def take(self) -> list[_Waiter[L]]:
        """Queued completions for a statement the caller runs; `settle` them after."""
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        for waiter in batch:
            waiter.in_flight = True
        if batch:
            self._release_held()  # they now wait for this statement, not for the hold
        return batch

    def settle(
        self,
        batch: Sequence[_Waiter[L]],
        written: Collection[str] = (),
        error: BaseException | None = None,
    ) -> None:
        for waiter in batch:
            waiter.in_flight = False
            if error is None:
                waiter.written, waiter.done = waiter.lease.job_id in written, True
            elif isinstance(error, Exception):
                waiter.error, waiter.done = error, True  # each waiter retries on its own
        if error is not None and not isinstance(error, Exception):
            # The carrier was cancelled: the waiters still waiting write themselves.
            self._queue[:0] = [waiter for waiter in batch if not waiter.abandoned]
        settled, self._settled = self._settled, None
        if settled is not None:
            settled.set()

    async def _write_next_batch(self) -> None:
        batch = self.take()
        self._writing = True
        try:
            written = await self.write([w.lease for w in batch])
        except BaseException as exc:
            self._writing = False
            self.settle(batch, error=exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._writing = False
            self.settle(batch, written)
