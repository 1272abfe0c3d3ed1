"""Issue 20: each limit kind is a module of scheduler/limits/ and one SQL file holding its
four functions; nothing else names it."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from scheduler import ConcurrencyLimit, ConfigurationError, Limit, RateLimit, StoredLimit
from scheduler.limits import limit_from_row
from scheduler.postgres import migrate as migrations

PARTS = ("problem", "room", "spend", "wait")


def shipped_kinds() -> dict[str, type[Limit]]:
    return {
        kind: cls for kind, cls in Limit._kinds.items() if cls.__module__.startswith("scheduler.")
    }


def test_every_kind_module_has_its_sql_file_with_its_four_functions() -> None:
    kinds = shipped_kinds()
    assert set(kinds) == {"concurrency", "rate"}
    files = dict(migrations.function_set().files)
    folder = resources.files("scheduler.postgres").joinpath("functions")
    for kind, cls in kinds.items():
        assert cls.__module__ == f"scheduler.limits.{kind}"
        assert f"limit_{kind}" in files, f"list limit_{kind} in functions/manifest.txt"
        text = folder.joinpath(f"limit_{kind}.sql").read_text("utf-8")
        defined = set(re.findall(r"FUNCTION \{schema\}\.(limit_\w+)\(", text))
        assert {f"limit_{kind}_{part}" for part in PARTS} <= defined
        assert all(name.startswith(f"limit_{kind}_") for name in defined), defined


def test_nothing_outside_a_kinds_own_files_names_its_functions() -> None:
    """The claim, set_limit() and the views reach a kind through the dispatchers only."""
    folder = resources.files("scheduler.postgres").joinpath("functions")
    for path in folder.iterdir():
        if not path.name.endswith(".sql"):
            continue
        text = path.read_text("utf-8")
        for kind in shipped_kinds():
            if path.name == f"limit_{kind}.sql":
                continue
            assert f"limit_{kind}_" not in text, (path.name, kind)


def test_settings_round_trip_through_a_row() -> None:
    for limit in (ConcurrencyLimit(3), RateLimit(10, 60.0, 2)):
        row = limit.as_row()
        assert row["kind"] == limit.kind
        settings = row["settings"]
        assert isinstance(settings, dict)
        assert limit_from_row(limit.kind, settings) == limit


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("quota", {"per_day": 10}),  # a kind this release does not know
        ("rate", {"rate_limit": 5, "rate_period": 1e-310, "rate_burst": 1}),  # out of bounds
        ("concurrency", {"limit": 3}),  # not its settings
    ],
)
def test_a_row_this_release_cannot_read_is_kept_as_stored(
    kind: str, settings: dict[str, object]
) -> None:
    limit = limit_from_row(kind, settings)
    assert isinstance(limit, StoredLimit)
    assert limit.as_row() == {"kind": kind, "settings": settings}
    assert "not enforced" in limit.describe()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConcurrencyLimit(0), "concurrency_limit must be an integer from 1"),
        (lambda: ConcurrencyLimit(True), "concurrency_limit"),
        (lambda: ConcurrencyLimit(2**31), "2147483647"),
        (lambda: RateLimit(0), "rate_limit"),
        (lambda: RateLimit(1, 0.0001), "rate_period must be seconds from 0.001"),
        (lambda: RateLimit(1, float("nan")), "rate_period"),
        (lambda: RateLimit(1, 1.0, 0), "rate_burst"),
    ],
)
def test_a_kind_checks_its_settings_when_made(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]


def test_describe_says_what_the_limit_does() -> None:
    assert ConcurrencyLimit(3).describe() == "concurrency 3"
    assert RateLimit(10, 60.0, 2).describe() == "rate 10/60s burst 2"
