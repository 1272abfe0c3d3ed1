"""The processes a process job started, found and killed wherever they went.

A pool child makes itself a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): whatever
the job starts stays in the child's tree even when it double-forks or calls ``setsid()``,
because orphans are re-parented to the child rather than to init. Killing the child's tree
from the leaves' side is then complete: each pass SIGKILLs every descendant found under
``/proc``; the children of a killed process become the subreaper's and the next pass finds
them. The child itself dies last, so nothing escapes to init while the walk goes on.

Elsewhere than Linux only the process group is reached.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36

#: How long a kill may keep walking a tree that keeps forking or is slow to die.
KILL_DEADLINE = 2.0


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux); whether it took effect."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """The live processes below `root` (children first), read from /proc; [] elsewhere."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":  # a zombie is dead already: nothing to kill
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    frontier = [root]
    while frontier:
        below = children.get(frontier.pop(), [])
        found.extend(below)
        frontier.extend(below)
    return found


def kill_descendants(root: int, deadline: float = KILL_DEADLINE) -> None:
    """SIGKILL every process below `root` until none is left alive (or `deadline` seconds
    passed). `root` itself is left alone: it must be a subreaper for the walk to be
    complete, since a killed process's children are found again only under it."""
    give_up = time.monotonic() + deadline
    killed: set[int] = set()
    while time.monotonic() < give_up:
        found = descendants(root)
        if not found:
            return
        if killed.issuperset(found):  # all dying already: let them become zombies
            time.sleep(0.005)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)


def kill_tree(root: int) -> None:
    """SIGKILL `root`'s descendants, then its process group (root included)."""
    kill_descendants(root)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)
