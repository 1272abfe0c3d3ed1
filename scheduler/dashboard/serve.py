"""`scheduler dashboard`: the dashboard on its own HTTP server (uvicorn), for when you have
no application to mount it in."""

from __future__ import annotations

import ipaddress
import logging
import signal
from types import FrameType
from typing import Any

import asyncpg
import uvicorn
from starlette.requests import Request

from scheduler.dashboard.app import create_app
from scheduler.dashboard.security import DashboardAction

logger = logging.getLogger("scheduler.dashboard")


def _anyone(request: Request, action: DashboardAction) -> bool:
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    pool: asyncpg.Pool[Any],
    schema: str,
    *,
    host: str,
    port: int,
    allow_actions: bool,
    secret: str | None,
) -> None:
    """Serve until SIGINT or SIGTERM. Read-only unless `allow_actions`: the standalone
    server has no users, so allowing actions allows them to whoever reaches the port."""
    if allow_actions and not _is_loopback(host):
        logger.warning(
            "dashboard: actions are allowed to anyone who can reach %s:%s; put an"
            " authenticating proxy in front, or mount create_app() with an authorize hook",
            host,
            port,
        )
    app = create_app(
        pool, schema=schema, authorize=_anyone if allow_actions else None, secret=secret
    )
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    print(
        f"dashboard of schema {schema!r} on http://{host}:{port}/"
        f" ({'actions allowed' if allow_actions else 'read-only'}); Ctrl-C stops it",
        flush=True,
    )
    # uvicorn stops gracefully on SIGINT or SIGTERM, then raises the signal again for the
    # handler that was there before it; make that handler end this command normally.
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        await server.serve()
    except _Stopped:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Stopped(Exception):
    """SIGINT or SIGTERM, raised again after uvicorn shut down."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped
