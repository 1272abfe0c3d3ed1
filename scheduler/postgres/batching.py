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

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

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
    released: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class CompletionBatcher(Generic[L]):
    """`complete(lease)` returns whether that attempt's success was written (fenced)."""

    write: Callable[[Sequence[L]], Awaitable[set[str]]]
    max_batch: int = 500
    max_hold: float = 0.05
    _queue: list[_Waiter[L]] = field(default_factory=list)
    _writing: bool = False
    _settled: anyio.Event = field(default_factory=anyio.Event)
    _hold: bool = False

    @property
    def hold(self) -> bool:
        return self._hold

    @hold.setter
    def hold(self, value: bool) -> None:
        self._hold = value
        if not value:  # nobody will carry them now: let the held waiters write
            for waiter in self._queue:
                waiter.released.set()

    async def complete(self, lease: L) -> bool:
        waiter = _Waiter(lease)
        self._queue.append(waiter)
        if self._hold:
            with anyio.move_on_after(self.max_hold):
                await waiter.released.wait()
        while not waiter.done:
            if waiter.in_flight or self._writing:
                await self._settled.wait()
            else:
                await self._write_next_batch()
        if waiter.error is not None:
            raise waiter.error
        return waiter.written

    def take(self) -> list[_Waiter[L]]:
        """Queued completions for a statement the caller runs; `settle` them after."""
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        for waiter in batch:
            waiter.in_flight = True
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
            waiter.released.set()
        if error is not None and not isinstance(error, Exception):
            self._queue[:0] = batch  # the carrier was cancelled: the waiters write
        finished, self._settled = self._settled, anyio.Event()
        finished.set()

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
