"""Generated job ids: UUID version 7 (RFC 9562), time-ordered.

A random UUID (version 4) lands anywhere in the jobs table's primary key, so under a big
table every insert, claim and completion touches a different index page; ids that start
with the time go to the key's hot end, which stays in memory. Still unguessable: 74 of the
128 bits are random.
"""

from __future__ import annotations

import os
import time
import uuid

_RANDOM_B_MASK = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    return uuid.UUID(int=_uuid7_int())


def new_job_id() -> str:
    """A uuid7() as text, formatted directly: a bulk enqueue makes one per job, and
    building a `uuid.UUID` to print it doubled the cost."""
    digits = f"{_uuid7_int():032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _uuid7_int() -> int:
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= random & _RANDOM_B_MASK  # 62 random bits (rand_b)
    return value
