"""Loads the named SQL blocks once and renders them for one schema.

The schema name is the only piece of text ever put into SQL; it must match a strict
identifier pattern and is then double-quoted, so no input can escape it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from scheduler.errors import ConfigurationError

SCHEMA_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_BLOCK_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def validate_schema_name(schema: str) -> str:
    if not isinstance(schema, str) or not SCHEMA_NAME_PATTERN.fullmatch(schema):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: use 1-48 characters of lower-case"
            " letters, digits and underscores, starting with a letter or underscore"
        )
    if schema.startswith("pg_"):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: PostgreSQL reserves the pg_ prefix"
        )
    return schema


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a schema (max 63 bytes: the schema name is at most 48)."""
    return f"{validate_schema_name(schema)}_events"


def render(template: str, schema: str) -> str:
    schema = validate_schema_name(schema)
    return template.replace("{schema}", quote_identifier(schema)).replace(
        "{channel}", quote_literal(channel_for(schema))
    )


@cache
def named_blocks(package: str, filename: str) -> dict[str, str]:
    """The `-- name --` blocks of a packaged .sql file, comment lines dropped."""
    text = resources.files(package).joinpath(filename).read_text()
    parts = _BLOCK_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


def _query_templates() -> dict[str, str]:
    return named_blocks("scheduler.postgres", "queries.sql")


class Queries:
    """The named statements rendered for one schema, as attributes (`queries.claim_jobs`)."""

    def __init__(self, schema: str, templates: dict[str, str] | None = None) -> None:
        templates = _query_templates() if templates is None else templates
        self._rendered = {name: render(sql, schema) for name, sql in templates.items()}

    def __getattr__(self, name: str) -> str:
        try:
            return self._rendered[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in queries.sql") from None

    def names(self) -> list[str]:
        return sorted(self._rendered)
