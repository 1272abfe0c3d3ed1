"""The listener hands notifications to its handlers from a task, never from asyncpg's
plain loop callback, where anyio cannot detect the running library once sniffio is
installed (a common dependency): handlers that read the clock or arm timers failed there,
and every wake-up silently fell back to polling."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import sniffio

from scheduler.postgres.listener import Listener


async def test_notifications_from_a_plain_loop_callback_reach_the_handlers() -> None:
    assert sniffio is not None  # the case that broke: sniffio importable
    received: list[tuple[str, Any, float]] = []
    three_arrived = anyio.Event()

    def recorder(kind: str) -> Any:
        def record(value: Any) -> None:
            # anyio.current_time() raises outside a task when sniffio is installed.
            received.append((kind, value, anyio.current_time()))
            if len(received) == 3:
                three_arrived.set()

        return record

    listener = Listener(
        pool=None,  # type: ignore[arg-type]  # delivery needs no connection
        channel="c",
        on_due=recorder("due"),
        on_schedule=recorder("schedule"),
        on_cancel=recorder("cancel"),
        on_reconnect=lambda: None,
        check_interval=1,
        check_timeout=1,
    )
    loop = asyncio.get_running_loop()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener._deliver)
        for payload in ("due 0.5", "schedule 2", "cancel job-1", "nonsense", "due x"):
            loop.call_soon(listener._receive, None, 0, "c", payload)
        with anyio.fail_after(5):
            await three_arrived.wait()
        tg.cancel_scope.cancel()
    assert [(kind, value) for kind, value, _ in received] == [
        ("due", 0.5),
        ("schedule", 2.0),
        ("cancel", "job-1"),
    ]


def test_its_own_delivery_probe_is_not_a_notification_for_the_handlers() -> None:
    listener = Listener(
        pool=None,  # type: ignore[arg-type]
        channel="c",
        on_due=lambda _: None,
        on_schedule=lambda _: None,
        on_cancel=lambda _: None,
        on_reconnect=lambda: None,
        check_interval=1,
        check_timeout=1,
    )
    listener._receive(None, 0, "c", "probe someone-else")  # a peer's: ignored by the handlers
    assert not listener._probe_heard.is_set()
    listener._receive(None, 0, "c", listener._probe)
    assert listener._probe_heard.is_set()
    assert listener._inbox.qsize() == 1  # only the peer's, which _handle ignores
