"""The child side of the process pool: ``python -m scheduler.executors.child``.

It reads one JSON request per line on its stdin, imports the function the request names
(``module:qualname``, which the parent took from its own registry), runs it with the JSON
arguments and `current_job()` set, and answers with one JSON line. No pickle crosses the
pipe in either direction. It exits at the end of its input, and dies with its parent.

Whatever the job starts goes with it: the child is a subreaper (see `descendants`), and a
watchdog thread that sees its parent go (the request pipe hangs up: the replica exited,
crashed or was SIGKILLed) kills every descendant before the child exits. So does the
end of its input (recycling, shutdown); a kill from the replica walks the same tree.

The job's own prints go to stderr: the protocol owns a private copy of the original stdout.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import select
import threading
from collections.abc import Callable
from typing import Any, BinaryIO
from uuid import UUID

from scheduler.context import JobContext, Snooze, set_current_job
from scheduler.error_text import describe_exception, exception_parts, storable_text
from scheduler.executors.descendants import become_subreaper, kill_descendants
from scheduler.serialization import encode_result

#: How often the watchdog also checks that its parent is still the replica.
PARENT_CHECK_INTERVAL = 1.0


def main() -> None:
    requests, replies = _take_protocol_streams()
    become_subreaper()
    _die_with_parent(os.getppid(), requests.fileno())
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        line = requests.readline()
        if not line:
            # The parent closed the pipe: recycled or shutting down. Nothing the jobs
            # started outlives this child.
            kill_descendants(os.getpid())
            return
        reply = run_request(json.loads(line), functions)
        replies.write(reply.encode("utf-8") + b"\n")
        replies.flush()


def run_request(request: dict[str, Any], functions: dict[str, Callable[..., Any]]) -> str:
    """Run one job; the reply line (without its newline)."""
    try:
        func = functions.get(request["target"])
        if func is None:
            func = functions[request["target"]] = _import(request["target"])
    except Exception as exc:
        parts = exception_parts(exc)
        return _reply(
            error=storable_text(f"could not import {request['target']}: {exc!r}"),
            error_type=parts.type,
            error_message=parts.message,
        )
    set_current_job(
        JobContext(
            request["job_id"], request["task_name"], request["attempt"], UUID(request["worker"])
        )
    )
    try:
        if inspect.iscoroutinefunction(func):
            value = asyncio.run(func(*request["args"], **request["kwargs"]))
        else:
            value = func(*request["args"], **request["kwargs"])
    except Snooze as snooze:
        return _reply(snooze=snooze.delay)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the job failed
        parts = exception_parts(exc)
        return _reply(
            error=describe_exception(exc), error_type=parts.type, error_message=parts.message
        )
    try:
        result_json = encode_result(value, max_bytes=request["max_result_bytes"])
    except ValueError as exc:
        return _reply(unstorable=str(exc))
    # The result is already JSON: embed it as is rather than as an escaped string.
    return f'{{"rss": {_resident_bytes()}, "result": {result_json}}}'


def _reply(**fields: Any) -> str:
    return json.dumps({"rss": _resident_bytes(), **fields})


def _import(target: str) -> Callable[..., Any]:
    module_name, _, qualname = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{target} is not callable")
    return found  # type: ignore[no-any-return]


def _take_protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """Private copies of stdin and stdout for the protocol; the job gets /dev/null as its
    stdin and stderr as its stdout, so nothing it prints can corrupt a reply."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return requests, replies


def _die_with_parent(parent: int, requests: int) -> None:
    """However the replica ends (SIGKILL, a crash, an exit), this child and everything the
    job started die within a bounded time: a watchdog thread waits for the request pipe to
    hang up (no writer left: the replica is gone) or for the child to be re-parented, then
    kills the descendants and exits. A thread rather than PR_SET_PDEATHSIG(SIGKILL), which
    would kill this child before it could take its descendants along (and fires when the
    parent *thread* ends, not the process)."""

    def watch() -> None:
        hangup = select.poll()
        hangup.register(requests, 0)  # POLLHUP and POLLERR are always reported
        while os.getppid() == parent:
            if hangup.poll(PARENT_CHECK_INTERVAL * 1000):
                break
        kill_descendants(os.getpid())
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _resident_bytes() -> int:
    """This process's resident memory now (what recycling on memory growth compares)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
