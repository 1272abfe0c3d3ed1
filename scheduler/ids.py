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
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= random & _RANDOM_B_MASK  # 62 random bits (rand_b)
    return uuid.UUID(int=value)


def new_job_id() -> str:
    return str(uuid7())
