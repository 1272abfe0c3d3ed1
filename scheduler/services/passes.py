"""One pass of a background service runs to its end: a stop lands between passes.

Cancelling a service in the middle of a statement, or of a pool connection being opened,
leaves the pool a half-done connection that asyncpg later reports at ERROR level (a reset
mid-transaction, a future never retrieved). Shutdown therefore waits for the pass in
flight, for at most PASS_SHIELD_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

PASS_SHIELD_SECONDS = 10.0
#: A replica runs a fleet-wide pass (the orphan sweep, housekeeping, pruning) when no
#: replica did in this share of its interval: with one replica, every interval; with
#: many, about once per interval for the whole fleet.
FLEET_PASS_SHARE = 0.9


@contextmanager
def uninterrupted(what: str, bound: float = PASS_SHIELD_SECONDS) -> Iterator[None]:
    """Shield the block from cancellation for at most `bound` seconds; raise TimeoutError
    if it took longer (the block was then cancelled after all)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + bound
        yield
    if scope.cancelled_caught:
        raise TimeoutError(f"{what} took over {bound} s")
