"""The jobs the benchmarks run: a no-op, and one that records how late it started."""

from __future__ import annotations

import time

#: Start minus due time, in seconds, of every `record_latency` job run in this process.
LATENCIES: list[float] = []


async def noop() -> None:
    return None


async def record_latency(due_epoch: float) -> None:
    LATENCIES.append(time.time() - due_epoch)
