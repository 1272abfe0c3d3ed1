"""A task module for the `scheduler worker --import` test."""

from __future__ import annotations

from pathlib import Path

from scheduler import task


@task(name="cli-test:touch")
def touch(path: str) -> None:
    Path(path).write_text("ran")
