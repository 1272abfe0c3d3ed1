"""A small ASGI app under uvicorn on 127.0.0.1, in its own thread, for HTTP job tests. It
records every request it receives, so a test can prove a refused one was never sent."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from tests.support.processes import free_port

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() in this process


@dataclass
class LocalServer:
    port: int
    requests: list[Received] = field(default_factory=list)
    _failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        request = Received(
            scope["method"],
            scope["path"],
            query,
            {k.decode(): v.decode() for k, v in scope["headers"]},
            body,
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
        status, headers, content = await self._answer(request)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _answer(self, request: Received) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        plain = [(b"content-type", b"text/plain")]
        if request.path == "/echo":
            echo = {
                "method": request.method,
                "body": request.body.decode(),
                "x-test": request.headers.get("x-test"),
                "content-type": request.headers.get("content-type"),
            }
            return 200, [(b"content-type", b"application/json")], json.dumps(echo).encode()
        if request.path == "/flaky":
            # Fails the first `fail` requests of each `key`, then succeeds.
            key = request.query["key"]
            with self._lock:
                self._failures[key] += 1
                count = self._failures[key]
            if count <= int(request.query["fail"]):
                return 500, plain, f"failure {count}".encode()
            return 200, plain, f"success after {count - 1} failures".encode()
        if request.path == "/slow":
            await asyncio.sleep(float(request.query["seconds"]))
            return 200, plain, b"finally"
        if request.path == "/big":
            return 200, plain, b"x" * 100_000
        if request.path == "/redirect":
            return 302, [(b"location", request.query["to"].encode())], b""
        return 404, plain, b"no such path"


@contextmanager
def serving() -> Iterator[LocalServer]:
    server = LocalServer(free_port())
    config = uvicorn.Config(
        server.app,
        host="127.0.0.1",
        port=server.port,
        log_level="warning",
        lifespan="off",
        interface="asgi3",
        timeout_graceful_shutdown=1,  # a /slow request still open must not hold the test
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="test-http-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uvicorn_server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test HTTP server did not start")
        time.sleep(0.01)
    try:
        yield server
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)
