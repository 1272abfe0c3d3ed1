from __future__ import annotations

import urllib.parse

import pytest

from scheduler import InvalidDsnError
from scheduler.operations import OperationError, parse_duration
from scheduler.postgres.dsn import describe_target, normalize_dsn, parse_keywords


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "host=h port=5432 dbname=db user=u",
            {"host": "h", "port": "5432", "dbname": "db", "user": "u"},
        ),
        ("  host = h   dbname=db ", {"host": "h", "dbname": "db"}),
        ("password='a b\\'c' user=u", {"password": "a b'c", "user": "u"}),
        ("password='' user=u", {"password": "", "user": "u"}),
        ("password=a\\ b\\\\c", {"password": "a b\\c"}),
        ("application_name='my app'", {"application_name": "my app"}),
        ("host=h1,h2 port=5432,5433", {"host": "h1,h2", "port": "5432,5433"}),
        ("", {}),
    ],
)
def test_libpq_keyword_strings_are_parsed_by_libpq_rules(
    text: str, expected: dict[str, str]
) -> None:
    assert parse_keywords(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("host='h", "no closing quote"),
        ("host h", "expected KEYWORD=VALUE"),
        ("=h", "expected KEYWORD=VALUE"),
        ("host=h connect_timeout=3", "'connect_timeout' is unknown or not supported"),
        ("hostaddr=1.2.3.4", "'hostaddr' is unknown"),
    ],
)
def test_malformed_keyword_strings_are_refused_saying_why(text: str, fragment: str) -> None:
    with pytest.raises(InvalidDsnError, match=fragment):
        parse_keywords(text)


def test_a_keyword_string_becomes_a_url_holding_the_same_values() -> None:
    url = normalize_dsn("host=127.0.0.1 port=5432 dbname=test user=postgres password='p w&d=1'")
    assert url is not None and url.startswith("postgresql://?")
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)) == {
        "host": "127.0.0.1",
        "port": "5432",
        "dbname": "test",
        "user": "postgres",
        "password": "p w&d=1",
    }
    assert describe_target(url) == "127.0.0.1:5432/test"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgres://u:secret@db/app",
        "postgresql://u@h1:5432,h2:5433/db",
        "postgresql://u@[::1]:5432/db",
        "postgresql:///db?host=/var/run/postgresql",
        "postgresql://",
    ],
)
def test_urls_pass_through_unchanged(url: str) -> None:
    assert normalize_dsn(url) == url


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("garbage", "is not a PostgreSQL DSN"),
        ("mysql://u@h/db", "scheme 'mysql' is not PostgreSQL"),
        ("postgresql://u@h:notaport/db", "port 'notaport' is not a port number"),
        ("postgresql://u@h:0/db", "port '0'"),
        ("postgresql://u@h:70000/db", "port '70000'"),
        ("postgresql://u@h1:5432,h2:x/db", "port 'x'"),
        ("postgresql://u@h/db?port=abc", "port 'abc'"),
        ("host=h port=abc", "port 'abc'"),
    ],
)
def test_malformed_dsns_are_refused_showing_the_forms_that_work(text: str, fragment: str) -> None:
    with pytest.raises(InvalidDsnError, match=fragment) as refused:
        normalize_dsn(text)
    assert "postgresql://" in str(refused.value) or "connection string" in str(refused.value)


def test_a_password_in_a_refused_dsn_is_not_repeated() -> None:
    with pytest.raises(InvalidDsnError) as refused:
        normalize_dsn("mysql://user:hunter2@h/db")
    assert "hunter2" not in str(refused.value)


def test_no_dsn_means_libpq_defaults() -> None:
    assert normalize_dsn(None) is None
    assert normalize_dsn("  ") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("90", 90),
        ("0.5", 0.5),
        (" 2H ", 7200),
    ],
)
def test_one_duration_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "5x", "1e3", "9" * 400 + "w", "1 d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(OperationError, match=r"duration|100 years"):
        parse_duration(text)
