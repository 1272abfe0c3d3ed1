"""The shape every limit kind has (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from scheduler.bounds import INT32_MAX
from scheduler.errors import ConfigurationError

# A queue's or a task's name: as the database stores it (limits.name).
_NAME_CHARS = 255


class Limit:
    """One limit of a queue or a task, fleet-wide. A kind is a frozen dataclass subclass
    that names its `kind` (its SQL functions are limit_<kind>_*); its fields are its
    settings, stored as JSON under their names and checked when it is made
    (`ConfigurationError`). Pass one to `Scheduler.set_limit()`."""

    #: The kind's name in the database (table `limits`, functions limit_<kind>_*).
    kind: ClassVar[str]
    _kinds: ClassVar[dict[str, type[Limit]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            Limit._kinds[cls.kind] = cls

    def settings(self) -> dict[str, object]:
        """What the database stores of this limit (JSON)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}  # type: ignore[arg-type]

    def as_row(self) -> dict[str, object]:
        """As the database holds it: {"kind": ..., "settings": {...}}."""
        return {"kind": self.kind, "settings": self.settings()}

    def describe(self) -> str:
        """A few words for `scheduler queues` and the worker's banner."""
        settings = ", ".join(f"{name} {value}" for name, value in self.settings().items())
        return f"{self.kind} {settings}"


@dataclass(frozen=True)
class StoredLimit(Limit):
    """A limit row this release cannot read as its kind: a kind it does not know (written
    by a newer release) or settings out of bounds. The claim skips its queue's or task's
    work; `problem` in `queue_stats()`/`task_limits()` says why."""

    kind: ClassVar[str] = ""  # not a kind: `stored_kind` is the row's
    stored_kind: str
    stored_settings: Mapping[str, object]

    def settings(self) -> dict[str, object]:
        return dict(self.stored_settings)

    def as_row(self) -> dict[str, object]:
        return {"kind": self.stored_kind, "settings": self.settings()}

    def describe(self) -> str:
        return f"{self.stored_kind} {dict(self.stored_settings)} (not enforced)"


def limit_from_row(kind: str, settings: Mapping[str, object]) -> Limit:
    """The limit a `limits` row holds, as its kind (a StoredLimit when it cannot be)."""
    cls = Limit._kinds.get(kind)
    if cls is not None:
        try:
            return cls(**settings)
        except (TypeError, ConfigurationError):
            pass
    return StoredLimit(kind, dict(settings))


def limit_scope(queue: str | None, task_name: str | None) -> tuple[str, str]:
    """('queue', name) or ('task', name): what a limit governs; exactly one is given."""
    if (queue is None) == (task_name is None):
        raise ConfigurationError("pass exactly one of queue= and task_name=")
    scope, name = ("queue", queue) if queue is not None else ("task", task_name)
    if not isinstance(name, str) or not 1 <= len(name) <= _NAME_CHARS or "\x00" in name:
        label = "queue" if scope == "queue" else "task_name"
        raise ConfigurationError(
            f"{label} must be a text of 1 to {_NAME_CHARS} characters without NUL, got {name!r}"
        )
    return scope, name


def check_count(name: str, value: object, hint: str = "") -> None:
    """A count setting: an integer from 1 to 2**31 - 1 (what the claim's arithmetic takes)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT32_MAX:
        extra = f"; {hint}" if hint else ""
        raise ConfigurationError(
            f"{name} must be an integer from 1 to {INT32_MAX}, got {value!r}{extra}"
        )
