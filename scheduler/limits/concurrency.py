"""Limit kind 'concurrency' (SQL: functions/limit_concurrency.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from scheduler.limits.base import Limit, check_count


@dataclass(frozen=True)
class ConcurrencyLimit(Limit):
    """At most `concurrency_limit` jobs of the queue or task run at once, fleet-wide (1:
    one at a time). A running job counts until it leaves 'running', an orphaned attempt
    included until it is reaped."""

    kind: ClassVar[str] = "concurrency"
    concurrency_limit: int

    def __post_init__(self) -> None:
        check_count("concurrency_limit", self.concurrency_limit, "to stop a queue, pause it")

    def describe(self) -> str:
        return f"concurrency {self.concurrency_limit}"
