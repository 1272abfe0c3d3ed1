"""Error text that PostgreSQL can always store: an outcome write must never fail because of
what a job raised. Pure."""

from __future__ import annotations

import traceback

#: Longest `last_error` stored; a longer text keeps its head and tail around a note.
MAX_ERROR_LENGTH = 8000
_TAIL = 2000


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
    escaped visibly) and at most about `limit` characters (head and tail kept)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them visible as \udxxx escapes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[: limit - _TAIL]}\n[... {cut} characters cut ...]\n{text[-_TAIL:]}"
    return text
