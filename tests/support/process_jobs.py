"""Tasks that run in child processes (`executor="process"`), and how tests see children.

A child imports this module by name, so everything here is module-level."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path
from typing import Any

from scheduler import current_job, task

CHILD_MODULE = "scheduler.executors.child"


@task(executor="process")
def whoami(work: int = 0) -> dict[str, Any]:
    """Where it ran, and which job it was told it is (after `work` rounds of hashing)."""
    job = current_job()
    total = 0
    for number in range(work):
        total += hash((number, total)) & 0xFF
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "job_id": job.job_id,
        "attempt": job.attempt,
        "task_name": job.task_name,
        "total": total,
    }


@task(executor="process")
async def async_whoami() -> dict[str, Any]:
    return {"pid": os.getpid(), "job_id": current_job().job_id}


@task(executor="process")
def burn_cpu(pid_file: str) -> None:
    """CPU-bound forever: no await and no check a thread or a coroutine could stop at."""
    Path(pid_file).write_text(str(os.getpid()))
    number = 0
    while True:
        number = (number * 31 + 7) % 1_000_003


@task(executor="process")
def exit_abruptly(code: int) -> None:
    os._exit(code)


@task(executor="process")
def kill_itself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task(executor="process")
def segfault() -> None:
    ctypes.string_at(0)


@task(executor="process")
def fail_loudly(text: str) -> None:
    raise ValueError(text)


@task(executor="process")
def return_unstorable() -> object:
    return {1, 2, 3}


@task(executor="process")
def snooze_once(seconds: float) -> int:
    if current_job().attempt == 1:
        current_job().snooze(seconds)
    return current_job().attempt


_hoard: list[bytes] = []


@task(executor="process")
def grow(megabytes: int) -> int:
    """Keeps `megabytes` more memory resident in this child."""
    _hoard.append(b"\x01" * (megabytes * 1024 * 1024))  # touched, so resident
    return os.getpid()


def child_pids(parent: int) -> set[int]:
    """The pool children of process `parent` alive now (zombies count: not reaped yet)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            cmdline = (stat.parent / "cmdline").read_bytes()
            if CHILD_MODULE.encode() in cmdline:
                found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@task(executor="process")
def start_grandchild_then_burn(pid_file: str) -> None:
    """Starts a long-lived grandchild, writes its pid, then spins."""
    import subprocess
    import sys

    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(pid_file).write_text(str(grandchild.pid))
    while True:
        pass


@task(executor="process")
def start_hidden_grandchildren_then_sleep(pid_file: str) -> None:
    """Starts one grandchild in the child's process group and one in a session of its own
    (`setsid`, out of reach of a group kill), writes both pids, then waits forever."""
    import subprocess
    import time

    kept = subprocess.Popen(["sleep", "600"])
    hidden = subprocess.Popen(["sleep", "600"], start_new_session=True)
    Path(pid_file).write_text(f"{kept.pid} {hidden.pid}")
    while True:
        time.sleep(1)
