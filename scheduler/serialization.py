"""The JSON codec for job arguments. Only plain JSON values are accepted, checked up front
so that a bad argument fails in `schedule()` and never half-way through a write."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from scheduler.bounds import MAX_INT_DIGITS, int_fits, unstorable_character
from scheduler.errors import ArgumentsNotSerializableError, PayloadTooLargeError

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def encode_arguments(
    args: Sequence[Any], kwargs: Mapping[str, Any] | None, *, max_bytes: int
) -> tuple[str, str]:
    """Return (args_json, kwargs_json) or raise a typed error naming the bad value."""
    if (
        not args
        and not kwargs
        and type(args) in (tuple, list)
        and type(kwargs) in (dict, type(None))
    ):
        return "[]", "{}"  # the common no-argument job, without the checks' overhead
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise ArgumentsNotSerializableError(
            f"args must be a tuple or list of positional arguments, got {type(args).__name__}"
            " (for one argument write args=(value,))"
        )
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, Mapping):
        raise ArgumentsNotSerializableError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    for index, value in enumerate(args):
        _check_json_value(value, f"args[{index}]")
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise ArgumentsNotSerializableError(f"kwargs keys must be str, got {key!r}")
        _check_key(key, "kwargs")
        _check_json_value(value, f"kwargs[{key!r}]")
    args_json = json.dumps(list(args), allow_nan=False, separators=(",", ":"))
    kwargs_json = json.dumps(dict(kwargs), allow_nan=False, separators=(",", ":"))
    size = len(args_json.encode()) + len(kwargs_json.encode())
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"job arguments encode to {size} bytes, over the cap of {max_bytes}; store large"
            " data elsewhere (a table, object storage) and pass its key, or raise"
            " max_payload_bytes"
        )
    return args_json, kwargs_json


def encode_result(value: Any, *, max_bytes: int) -> str:
    """A job's return value as JSON text; ValueError (a message saying what to change) when
    it is not plain JSON or encodes to more than `max_bytes`."""
    try:
        _check_json_value(value, "the return value")
    except ArgumentsNotSerializableError as exc:
        raise ValueError(str(exc)) from None
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    size = len(text.encode())
    if size > max_bytes:
        raise ValueError(
            f"the return value encodes to {size} bytes, over the cap of {max_bytes}; return"
            " a key to data stored elsewhere, or raise max_result_bytes"
        )
    return text


def decode_arguments(args_json: str, kwargs_json: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    # No arguments is the common case, and parsing costs more than this comparison.
    args = [] if args_json == "[]" else load_json(args_json)
    kwargs = {} if kwargs_json == "{}" else load_json(kwargs_json)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("stored arguments must be a JSON array and a JSON object")
    return tuple(args), kwargs


def load_json(text: str) -> Any:
    """Parse JSON read from the database, whatever the size of its numbers."""
    try:
        return json.loads(text)
    except ValueError:
        # A row written by SQL may hold an integer longer than Python's int <-> str limit
        # (jsonb also spells a large float such as 1e308 as all its digits): read it exactly.
        return json.loads(text, parse_int=_long_int)


def _long_int(digits: str) -> int:
    return int(digits) if len(digits) <= MAX_INT_DIGITS else int(Decimal(digits))


def _check_json_value(value: Any, where: str) -> None:
    # bool and int are fine; subclasses such as IntEnum encode as their value.
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if (problem := unstorable_character(value)) is not None:
            raise ArgumentsNotSerializableError(
                f"{where} contains {problem}, which PostgreSQL cannot store; remove it, or"
                " pass binary data as base64 text"
            )
        return
    if isinstance(value, int):
        if not int_fits(value):
            raise ArgumentsNotSerializableError(
                f"{where} is an integer of more than {MAX_INT_DIGITS} digits, which not every"
                " replica can decode; pass it as a string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentsNotSerializableError(
                f"{where} is {value!r}; JSON has no NaN or infinity, pass None or a string"
            )
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentsNotSerializableError(
                    f"{where} has the non-string key {key!r}; JSON object keys are strings"
                )
            _check_key(key, where)
            _check_json_value(item, f"{where}[{key!r}]")
        return
    raise ArgumentsNotSerializableError(
        f"{where} is a {type(value).__name__}, which is not JSON; pass plain values"
        " (dict, list, str, int, float, bool, None), e.g. an id instead of an object"
    )


def _check_key(key: str, where: str) -> None:
    if (problem := unstorable_character(key)) is not None:
        raise ArgumentsNotSerializableError(
            f"{where} has the key {key!r}, which contains {problem}; PostgreSQL cannot store it"
        )
