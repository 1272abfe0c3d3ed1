"""A pool of child processes for tasks declared with ``executor="process"``.

Why asyncio subprocesses rather than `multiprocessing`: every message here is one line of
JSON on a pipe, so nothing is pickled (multiprocessing pickles what crosses its pipes, and
its spawn start pickles the process object); the event loop waits on the pipe itself, with
no helper thread per child; a child's death is plain EOF plus an exit status; and the child
is an ordinary ``python -m scheduler.executors.child`` whose imports are explicit.

Each child runs one job at a time and is reused. A job waits for a free child while it
holds its concurrency slot, so children count against `max_concurrent_jobs`. There are
never more children than the pool size: one is started only when a job has taken a place
and no idle child is left, and a child being replaced is gone before its place is free.
A timeout, a cancel or a shutdown past its grace kills the job's child (SIGKILL) and the
runner records what stopped it; a child that dies by itself fails the attempt. Every such
kill, and every end of the replica (see `child`), also takes whatever the job started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio

from scheduler.context import Snooze
from scheduler.error_text import ErrorParts
from scheduler.errors import SchedulerError
from scheduler.executors.descendants import kill_tree
from scheduler.running_jobs import RunningJob
from scheduler.task_definition import TaskDefinition
from scheduler.tasks import import_path_of

logger = logging.getLogger("scheduler.executors.process")

#: How long a child being recycled or shut down may take to exit by itself before SIGKILL.
EXIT_WAIT = 2.0


class ProcessJobError(SchedulerError):
    """A process job failed in its child: it raised (the child's traceback is the message),
    returned a value that cannot be stored, or its child died. `parts` is the type and
    message of what the job raised in its child (None when it raised nothing)."""

    def __init__(self, message: str, parts: ErrorParts | None = None) -> None:
        super().__init__(message)
        self.parts = parts


class ChildProcess:
    """One child and its pipes; `call` runs one request and returns the parsed reply."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.jobs_done = 0
        self.resident_bytes = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, request: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(request)
            await self.process.stdin.drain()
            line = await self.process.stdout.readline()
        except (ConnectionError, BrokenPipeError):
            line = b""
        if not line.endswith(b"\n"):  # EOF: the child is gone (crashed, killed, exited)
            code = await self.process.wait()
            raise ProcessJobError(f"the job's worker process (pid {self.pid}) {_death(code)}")
        self.jobs_done += 1
        reply: dict[str, Any] = json.loads(line)
        self.resident_bytes = int(reply.get("rss", 0))
        return reply

    async def kill(self) -> None:
        """SIGKILL it and whatever the job started: every descendant (the child is their
        subreaper, so a setsid() or a double fork does not hide one), then its group."""
        if self.process.returncode is None:
            await _uninterrupted(kill_tree, self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        """Ask it to exit (end of its input), then kill it if it does not."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        with anyio.move_on_after(EXIT_WAIT):
            await self.process.wait()
        await self.kill()


class ProcessPool:
    def __init__(
        self,
        size: int,
        *,
        max_jobs_per_child: int | None,
        max_memory_per_child: int | None,
        max_result_bytes: int,
    ) -> None:
        self.size = size
        self._max_jobs = max_jobs_per_child
        self._max_memory = max_memory_per_child
        self._max_result_bytes = max_result_bytes
        self._places = anyio.Semaphore(size)
        self._idle: list[ChildProcess] = []
        self._busy: set[ChildProcess] = set()
        self._closed = False

    def child_pids(self) -> list[int]:
        """The children alive now, idle or running a job."""
        return sorted(child.pid for child in (*self._idle, *self._busy))

    async def run(
        self,
        entry: RunningJob,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run the job in a child; its return value, or its exception. A cancellation (the
        job's timeout, a cancel, a shutdown) kills the child and propagates."""
        lease = entry.claimed.lease
        request = json.dumps(
            {
                "target": import_path_of(definition),
                "job_id": lease.job_id,
                "task_name": definition.name,
                "attempt": lease.attempt,
                "worker": str(lease.owner),
                "args": args,
                "kwargs": kwargs,
                "max_result_bytes": self._max_result_bytes,
            }
        ).encode("utf-8")
        async with self._places:
            if self._closed:
                raise ProcessJobError("the process pool is shut down")
            with anyio.CancelScope(shield=True):  # a child started is a child tracked
                child = self._idle.pop() if self._idle else await self._start_child()
                self._busy.add(child)
            answered = False
            try:
                reply = await child.call(request + b"\n")
                answered = True
            finally:
                # Gone before its place is free: never more children than places.
                with anyio.CancelScope(shield=True):
                    self._busy.discard(child)
                    if not answered:  # cancelled, crashed or garbled: nothing to wait for
                        await child.kill()
                    elif self._closed or self._worn_out(child):
                        await child.stop()  # idle now: let it exit in order
                    else:
                        self._idle.append(child)
        return _outcome(reply, child.pid)

    def _worn_out(self, child: ChildProcess) -> bool:
        if self._max_jobs is not None and child.jobs_done >= self._max_jobs:
            logger.debug("recycling child %d after %d jobs", child.pid, child.jobs_done)
            return True
        if self._max_memory is not None and child.resident_bytes > self._max_memory:
            logger.info(
                "recycling child %d: %d bytes resident, over the limit of %d",
                child.pid,
                child.resident_bytes,
                self._max_memory,
            )
            return True
        return False

    async def _start_child(self) -> ChildProcess:
        environment = dict(os.environ)
        # The child finds the job's module (and this package) where the parent does.
        environment["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scheduler.executors.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=environment,
            limit=self._max_result_bytes + 1024 * 1024,
            # Its own process group, so a kill reaches what the job started; a Ctrl-C meant
            # for the replica does not reach it (the replica stops it in order).
            start_new_session=True,
        )
        logger.debug("started child %d", process.pid)
        return ChildProcess(process)

    async def aclose(self) -> None:
        """Stop the idle children; running jobs were cancelled by the drain (which killed
        their children). Bounded by EXIT_WAIT."""
        self._closed = True
        idle, self._idle = self._idle, []
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as stopping:
                for child in idle:
                    stopping.start_soon(child.stop)
                for child in list(self._busy):  # abandoned by the drain: do not outlive us
                    stopping.start_soon(child.kill)


async def _uninterrupted(function: Callable[[int], None], argument: int) -> None:
    """Run `function` in a thread to its end, even through cancels (a job is often
    interrupted twice: say a cancel request and the shutdown); they are re-raised after."""
    future = asyncio.get_running_loop().run_in_executor(None, function, argument)
    interrupted: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            interrupted = exc
    future.result()
    if interrupted is not None:
        raise interrupted


def _outcome(reply: dict[str, Any], pid: int) -> Any:
    if "result" in reply:
        return reply["result"]
    if "snooze" in reply:
        raise Snooze(float(reply["snooze"]))
    if "unstorable" in reply:
        raise ProcessJobError(
            f"the job returned a value that cannot be stored: {reply['unstorable']}"
        )
    parts = None
    if reply.get("error_message") is not None:
        parts = ErrorParts(reply.get("error_type"), str(reply["error_message"]))
    raise ProcessJobError(
        f"the job failed in its worker process (pid {pid}):\n{reply['error']}", parts
    )


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code} before answering"
