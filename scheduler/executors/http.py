"""Built-in HTTP jobs: the task `HTTP_TASK` performs the request its JSON arguments describe.

A replica runs it only when it is given `http_allowed_hosts`; the host of every request,
redirects included, must match that list before any connection is made, so a job row
written by anyone who can write rows cannot make a replica call anything else. The client
is httpx, an optional extra (``pip install 'pgcadence[http]'``), imported on first use.

The job's result is ``{"status": int, "body": str, "body_truncated": bool}`` with at most
`max_body_bytes` of the body (decoded as UTF-8, undecodable bytes replaced). A status
outside `accept` fails the attempt, so the job's retry policy applies (backoff included).
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import json as jsonlib
import math
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scheduler.errors import ConfigurationError, InvalidJobError, SchedulerError
from scheduler.task_definition import TaskDefinition
from scheduler.tasks import define_task

#: The registered name of the built-in HTTP task (schedule it by this name).
HTTP_TASK = "scheduler.http"

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BODY_BYTES = 4096
#: Bodies kept in results stay well inside the default result cap (64 KiB).
MAX_BODY_BYTES = 32 * 1024
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class HttpRequestRefusedError(SchedulerError):
    """The request was not sent: its host is not in `http_allowed_hosts`, or its
    arguments are invalid (a row written by hand)."""


class HttpStatusError(SchedulerError):
    """The server answered with a status the job does not accept."""


class HostAllowlist:
    """Exact host names or addresses, and ``*.example.com`` for any subdomain of
    example.com (not example.com itself). Case-insensitive; any port."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.hosts = tuple(dict.fromkeys(_allowlist_entry(host) for host in hosts))

    def allows(self, host: str) -> bool:
        host = _normal_host(host)
        for entry in self.hosts:
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                    return True
            elif host == entry:
                return True
        return False

    def check(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if not self.allows(host):
            allowed = ", ".join(self.hosts) or "none: HTTP jobs are off"
            raise HttpRequestRefusedError(
                f"refused to call {host or url!r}: not in http_allowed_hosts ({allowed});"
                " add the host to the replica's http_allowed_hosts to allow it"
            )


def validate_allowed_hosts(hosts: object) -> tuple[str, ...]:
    if isinstance(hosts, str):  # a lone name would be read as its characters
        hosts = (hosts,)
    if not isinstance(hosts, Iterable):
        raise ConfigurationError(f"http_allowed_hosts must be a list of host names, got {hosts!r}")
    return HostAllowlist(hosts).hosts


def http_request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    json: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    accept: Sequence[int] | None = None,
    follow_redirects: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> dict[str, Any]:
    """The kwargs of an HTTP job, checked: ``schedule(HTTP_TASK, kwargs=http_request(...))``.

    `body` (text) or `json` (any JSON value), not both; `timeout` in seconds for the whole
    request; `accept` the status codes that succeed (default 200-299); `max_body_bytes` of
    the response body kept in the result. Raises `InvalidJobError` on bad input."""
    kwargs: dict[str, Any] = {"url": url, "method": method}
    if headers:
        kwargs["headers"] = dict(headers)
    if body is not None:
        kwargs["body"] = body
    if json is not None:
        kwargs["json"] = json
    if timeout != DEFAULT_TIMEOUT:
        kwargs["timeout"] = timeout
    if accept is not None:
        kwargs["accept"] = list(accept)
    if follow_redirects:
        kwargs["follow_redirects"] = True
    if max_body_bytes != DEFAULT_MAX_BODY_BYTES:
        kwargs["max_body_bytes"] = max_body_bytes
    HttpJob.from_kwargs(kwargs, InvalidJobError)
    return kwargs


@dataclass(frozen=True)
class HttpJob:
    url: str
    method: str
    headers: dict[str, str]
    content: bytes | None
    timeout: float
    accept: frozenset[int] | None
    follow_redirects: bool
    max_body_bytes: int

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], error: type[Exception]) -> HttpJob:
        """Checked arguments, or `error` saying which one is wrong."""
        unknown = set(kwargs) - {
            "url",
            "method",
            "headers",
            "body",
            "json",
            "timeout",
            "accept",
            "follow_redirects",
            "max_body_bytes",
        }
        if unknown:
            raise error(f"unknown HTTP job argument(s): {', '.join(sorted(unknown))}")
        url = kwargs.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise error(f"url must be an http:// or https:// URL, got {url!r}")
        if not urlsplit(url).hostname:
            raise error(f"url {url!r} names no host")
        method = kwargs.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise error(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        headers = kwargs.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise error("headers must be an object of text names to text values")
        if "body" in kwargs and "json" in kwargs:
            raise error("give body (text) or json (a JSON value), not both")
        content: bytes | None = None
        if "json" in kwargs:
            content = jsonlib.dumps(kwargs["json"]).encode("utf-8")
            if not any(name.lower() == "content-type" for name in headers):
                headers = {**headers, "content-type": "application/json"}
        elif kwargs.get("body") is not None:
            if not isinstance(kwargs["body"], str):
                raise error("body must be text (send JSON with json=)")
            content = kwargs["body"].encode("utf-8")
        timeout = kwargs.get("timeout", DEFAULT_TIMEOUT)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= 3600
            or math.isnan(timeout)
        ):
            raise error(f"timeout must be seconds, more than 0 and at most 3600; got {timeout!r}")
        accept = kwargs.get("accept")
        if accept is not None and (
            not isinstance(accept, list)
            or not accept
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in accept)
            or not all(100 <= c <= 599 for c in accept)
        ):
            raise error(
                f"accept must be a non-empty list of status codes (100-599), got {accept!r}"
            )
        follow = kwargs.get("follow_redirects", False)
        if not isinstance(follow, bool):
            raise error(f"follow_redirects must be true or false, got {follow!r}")
        limit = kwargs.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        if type(limit) is not int or not 0 <= limit <= MAX_BODY_BYTES:
            raise error(
                f"max_body_bytes must be an integer from 0 to {MAX_BODY_BYTES}, got {limit!r}"
            )
        return cls(
            url=url,
            method=method.upper(),
            headers=headers,
            content=content,
            timeout=float(timeout),
            accept=frozenset(accept) if accept is not None else None,
            follow_redirects=follow,
            max_body_bytes=limit,
        )

    def accepts(self, status: int) -> bool:
        return status in self.accept if self.accept is not None else 200 <= status <= 299


async def perform_http_request(allowlist: HostAllowlist, **kwargs: Any) -> dict[str, Any]:
    """The built-in task: check, then send, then keep the status and the body's head."""
    job = HttpJob.from_kwargs(kwargs, HttpRequestRefusedError)
    allowlist.check(job.url)  # before anything else, even before importing the client
    try:
        import httpx
    except ImportError:
        raise HttpRequestRefusedError(
            "HTTP jobs need httpx: pip install 'pgcadence[http]'"
        ) from None

    async def check_each_request(request: httpx.Request) -> None:
        # The URL as the client will send it, and every redirect hop: the one that counts.
        allowlist.check(str(request.url))

    client = httpx.AsyncClient(
        verify=_tls_context(),
        timeout=job.timeout,
        follow_redirects=job.follow_redirects,
        event_hooks={"request": [check_each_request]},
        trust_env=False,  # no proxy from the environment: the allowlist names the real host
    )
    head = bytearray()
    truncated = False
    async with (
        client,
        client.stream(job.method, job.url, headers=job.headers, content=job.content) as response,
    ):
        async for chunk in response.aiter_bytes():
            head += chunk
            if len(head) > job.max_body_bytes:
                truncated = True
                break
    body = bytes(head[: job.max_body_bytes]).decode("utf-8", "replace")
    if not job.accepts(response.status_code):
        raise HttpStatusError(
            f"{job.method} {job.url} answered {response.status_code}"
            f" (accepted: {sorted(job.accept) if job.accept else '200-299'}): {body[:500]!r}"
        )
    return {"status": response.status_code, "body": body, "body_truncated": truncated}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs more than a local request."""
    try:
        import certifi
    except ImportError:  # httpx brings certifi; the system's CAs otherwise
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def http_task(allowed_hosts: Sequence[str]) -> TaskDefinition:
    """The built-in task's definition for a replica that allows these hosts."""
    if importlib.util.find_spec("httpx") is None:
        raise ConfigurationError(
            "http_allowed_hosts turns HTTP jobs on, and they need httpx:"
            " pip install 'pgcadence[http]'"
        )
    allowlist = HostAllowlist(allowed_hosts)
    return define_task(functools.partial(perform_http_request, allowlist), name=HTTP_TASK)


def _allowlist_entry(host: object) -> str:
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError(f"http_allowed_hosts entries must be host names, got {host!r}")
    entry = _normal_host(host)
    name = entry[2:] if entry.startswith("*.") else entry
    try:
        ipaddress.ip_address(name)
        return entry
    except ValueError:
        pass
    if not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ConfigurationError(
            f"http_allowed_hosts entry {host!r} is not a host name, an IP address or"
            " '*.domain' (no scheme, port or path)"
        )
    return entry


def _normal_host(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")
