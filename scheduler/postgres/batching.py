"""Group commit for job completions.

With durable settings every commit waits for a WAL flush, so one commit per finished job
caps throughput at the flush rate. Completions that arrive while a write is in flight wait
and go together in the next statement: no added latency when idle, one commit for many
jobs under load. The first waiter of a batch writes it; there is no background task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from scheduler.store import Lease


@dataclass(eq=False)
class _Waiter:
    lease: Lease
    done: bool = False
    written: bool = False
    error: BaseException | None = None


@dataclass
class CompletionBatcher:
    """`complete(lease)` returns whether that attempt's success was written (fenced)."""

    write: Callable[[Sequence[Lease]], Awaitable[set[str]]]
    max_batch: int = 500
    _queue: list[_Waiter] = field(default_factory=list)
    _writing: bool = False
    _written: anyio.Event = field(default_factory=anyio.Event)

    async def complete(self, lease: Lease) -> bool:
        waiter = _Waiter(lease)
        self._queue.append(waiter)
        while not waiter.done:
            if self._writing:
                await self._written.wait()
            else:
                await self._write_next_batch()
        if waiter.error is not None:
            raise waiter.error
        return waiter.written

    async def _write_next_batch(self) -> None:
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        self._writing = True
        try:
            written = await self.write([w.lease for w in batch])
        except Exception as exc:  # every waiter of the batch sees the failure and retries
            for waiter in batch:
                waiter.error, waiter.done = exc, True
        except BaseException:
            self._queue[:0] = batch  # this writer is being cancelled: another one writes
            raise
        else:
            for waiter in batch:
                waiter.written, waiter.done = waiter.lease.job_id in written, True
        finally:
            self._writing = False
            finished, self._written = self._written, anyio.Event()
            finished.set()
