"""A deadline for the current asyncio task, for the per-job path.

`anyio.move_on_after` does this with a cancel scope, which costs several event-loop and
library look-ups per use; the runner needs one per attempt. `MoveOnAt` keeps one timer
handle: at the deadline it cancels the task, and on leaving the block it swallows that
cancellation (and only that one) and balances the task's cancel count (3.11+), so code
after it sees the task as never cancelled.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class MoveOnAt:
    __slots__ = ("_cancelling", "_deadline", "_handle", "_task", "expired")

    def __init__(self, deadline: float) -> None:
        """`deadline` on the event loop's clock (`loop.time()`)."""
        self._deadline = deadline
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self.expired = False

    def __enter__(self) -> MoveOnAt:
        task = asyncio.current_task()
        assert task is not None, "MoveOnAt is used inside a task"
        self._task = task
        self._cancelling = _cancelling(task)
        self._handle = task.get_loop().call_at(self._deadline, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._handle is not None and self._task is not None
        self._handle.cancel()
        if not self.expired:
            return False
        # The timer fired while the task waited inside the block, so its CancelledError was
        # delivered there: it is the one arriving here (or the block swallowed it). Swallow
        # it only if nobody else cancelled the task meanwhile (as asyncio.timeout does).
        uncancel(self._task)
        return exc_type is asyncio.CancelledError and _cancelling(self._task) <= self._cancelling


def uncancel(task: asyncio.Task[object], times: int = 1) -> None:
    """Forget cancellations this code made and handled (a no-op before Python 3.11, which
    does not count them)."""
    undo = getattr(task, "uncancel", None)
    if undo is not None:
        for _ in range(times):
            undo()


def _cancelling(task: asyncio.Task[object]) -> int:
    """Cancellations requested and not yet handled (always 0 before Python 3.11)."""
    count = getattr(task, "cancelling", None)
    return count() if count is not None else 0
