from __future__ import annotations

import json
from typing import Any

import pytest

from scheduler import ArgumentsNotSerializableError, InvalidJobError, PayloadTooLargeError
from scheduler.serialization import decode_arguments, encode_arguments


def test_round_trip_of_plain_json() -> None:
    args = (1, "two", 3.5, None, True, [1, {"a": [2]}])
    kwargs = {"nested": {"list": [1, 2]}, "flag": False}
    args_json, kwargs_json = encode_arguments(args, kwargs, max_bytes=10_000)
    assert decode_arguments(args_json, kwargs_json) == (
        (1, "two", 3.5, None, True, [1, {"a": [2]}]),
        kwargs,
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (({1, 2},), None, "args[0] is a set"),
        ((object(),), None, "args[0] is a object"),
        ((float("nan"),), None, "NaN"),
        ((), {"x": float("inf")}, "infinity"),
        (({1: "a"},), None, "non-string key 1"),
        ((), {"when": b"bytes"}, "kwargs['when'] is a bytes"),
        ("abc", None, "tuple or list"),
        ((), [("a", 1)], "kwargs must be a dict"),
        (("a\x00",), None, "args[0] contains a NUL character at index 1"),
        ((["ok", "\ud800"],), None, "args[0][1] contains the lone surrogate"),
        ((), {"k": {"n\x00": 1}}, "kwargs['k'] has the key"),
        ((), {"\udc00": 1}, "kwargs has the key"),
        ((10**4300,), None, "more than 4300 digits"),
        ((), {"n": [-(10**4300)]}, "more than 4300 digits"),
    ],
)
def test_non_json_arguments_are_refused_with_where_they_are(
    args: Any, kwargs: Any, fragment: str
) -> None:
    with pytest.raises(ArgumentsNotSerializableError, match=fragment.replace("[", r"\[")):
        encode_arguments(args, kwargs, max_bytes=10_000)


def test_argument_errors_are_value_errors_too() -> None:
    assert issubclass(ArgumentsNotSerializableError, InvalidJobError)
    assert issubclass(InvalidJobError, ValueError)


def test_payload_cap_counts_encoded_bytes() -> None:
    encode_arguments(("x" * 90,), None, max_bytes=100)
    with pytest.raises(PayloadTooLargeError, match="over the cap of 100"):
        encode_arguments(("é" * 60,), None, max_bytes=100)  # 120 bytes in UTF-8


def test_encoding_is_compact_json() -> None:
    args_json, kwargs_json = encode_arguments((1, 2), {"a": 1}, max_bytes=100)
    assert json.loads(args_json) == [1, 2]
    assert kwargs_json == '{"a":1}'


def test_the_largest_accepted_integers_round_trip() -> None:
    largest = 10**4300 - 1
    args_json, kwargs_json = encode_arguments((largest, -largest), None, max_bytes=10_000)
    assert decode_arguments(args_json, kwargs_json) == ((largest, -largest), {})


def test_integers_longer_than_pythons_limit_are_decoded_exactly() -> None:
    # Plain SQL can store them (jsonb numbers have no such limit).
    args, kwargs = decode_arguments("[" + "9" * 5000 + "]", '{"n": -' + "1" * 4400 + "}")
    assert args == (10**5000 - 1,)
    assert kwargs == {"n": -(10**4400 - 1) // 9}


def test_generated_job_ids_are_time_ordered_version_7_uuids() -> None:
    import time
    import uuid

    from scheduler.ids import new_job_id

    first = new_job_id()
    time.sleep(0.002)  # a later millisecond: the order is by time, not by chance
    second = new_job_id()
    parsed = uuid.UUID(first)
    assert str(parsed) == first  # the canonical text form, formatted without uuid.UUID
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert first < second
    assert abs((parsed.int >> 80) - time.time() * 1000) < 60_000
    assert len({new_job_id() for _ in range(1000)}) == 1000
