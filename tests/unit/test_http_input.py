"""HTTP jobs: what http_request() and the replica's allowlist refuse, and how the
allowlist matches hosts, all before anything reaches the database or the network (the
requests themselves run in tests/integration/test_http_jobs.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from scheduler import ConfigurationError, InvalidJobError, http_request
from tests.support.unconnected import unconnected_scheduler

LOCAL = ["127.0.0.1"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"url": "http://x", "method": "BREW"}, "method must be one of"),
        ({"url": "http://x", "body": "a", "json": {}}, "not both"),
        ({"url": "http://x", "timeout": 0}, "timeout must be seconds"),
        ({"url": "http://x", "accept": []}, "accept must be"),
        ({"url": "http://x", "max_body_bytes": 10**9}, "max_body_bytes"),
        ({"url": "http://x", "headers": {"a": 1}}, "headers must be"),
    ],
)
def test_http_request_checks_its_arguments(arguments: dict[str, Any], message: str) -> None:
    url = arguments.pop("url")
    with pytest.raises(InvalidJobError, match=message):
        http_request(url, **arguments)


@pytest.mark.parametrize("entry", ["http://example.com", "example.com:80", "", "a b", "*"])
def test_bad_allowlist_entries_are_refused(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="http_allowed_hosts"):
        unconnected_scheduler(http_allowed_hosts=[entry])


def test_allowlist_matching() -> None:
    from scheduler.executors.http import HostAllowlist

    allowlist = HostAllowlist(["API.example.com", "*.hooks.example.org", "::1", "10.0.0.1"])
    assert allowlist.allows("api.example.com") and allowlist.allows("API.EXAMPLE.COM.")
    assert allowlist.allows("a.hooks.example.org") and allowlist.allows("b.a.hooks.example.org")
    assert not allowlist.allows("hooks.example.org")
    assert not allowlist.allows("evilhooks.example.org")
    assert not allowlist.allows("example.com") and not allowlist.allows("api.example.com.evil")
    assert allowlist.allows("[::1]") and allowlist.allows("10.0.0.1")
    assert not HostAllowlist([]).allows("127.0.0.1")


def test_http_request_defaults_are_left_out_of_the_stored_arguments() -> None:
    assert http_request("http://127.0.0.1/x") == {"url": "http://127.0.0.1/x", "method": "GET"}


def test_allowing_hosts_without_httpx_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'pgcadence\[http\]'"):
        unconnected_scheduler(http_allowed_hosts=LOCAL)
    unconnected_scheduler()  # HTTP off: the core needs nothing more
