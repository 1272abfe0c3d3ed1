"""Error text that PostgreSQL can always store: an outcome write must never fail because of
what a job raised; and an error's type and message apart from its traceback. Pure."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

#: Longest `last_error` stored; a longer text keeps its head and tail around a note.
MAX_ERROR_LENGTH = 8000
_TAIL = 2000
#: Longest `error_message` stored (the full text stays in `last_error`).
MAX_MESSAGE_LENGTH = 2000


@dataclass(frozen=True)
class ErrorParts:
    """What lists, logs and alerts show of an error: the exception's type as a traceback
    names it (``ValueError``, ``myapp.errors.PaymentDeclined``; None when the error is no
    exception, e.g. a timeout) and its message."""

    type: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type else self.message


def exception_parts(exc: BaseException) -> ErrorParts:
    """The type and message of `exc`, storable. Never raises."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"  # as a traceback names it
    try:
        message = str(exc)
    except Exception:
        message = "(its message could not be read)"
    return ErrorParts(_cut(storable_text(name), 200), _cut(storable_text(message)))


def error_line(error_type: str | None, error_message: str | None, text: str | None) -> str:
    """One line for a list: ``Type: message`` from the parts, else the text's first line
    (rows written before the parts existed are derived by the migration, so that is rare)."""
    if error_message is not None:
        line = str(ErrorParts(error_type, error_message))
    else:
        line = (text or "").strip().split("\n", 1)[0]
    return " ".join(line.split())


def _cut(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """The traceback of `exc` (up to 20 frames) as storable text. Never raises: an exception
    whose `__str__` raises is described by its type."""
    try:
        text = "".join(traceback.format_exception(exc, limit=20)).strip()
    except Exception:  # e.g. a __str__ that raises something traceback does not catch
        text = f"{type(exc).__module__}.{type(exc).__qualname__} (its message could not be read)"
    return storable_text(text)


def storable_text(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """`text` without what a PostgreSQL text column refuses (NUL, lone surrogates, which are
    escaped visibly) and at most `limit` characters (head and tail kept)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them visible as \udxxx escapes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        # The marker counts: at most `limit` characters, so a store that cuts at `limit`
        # (end_attempts() does, for SQL callers) keeps the tail, the exception's own line.
        longest_marker = f"\n[... {len(text)} characters cut ...]\n"
        head = limit - _TAIL - len(longest_marker)
        cut = len(text) - head - _TAIL
        text = f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-_TAIL:]}"
    return text
