"""The name of one attempt: every write an attempt makes is conditional on it.

A module of its own, below both the store port (claims hand leases out) and the outcomes
(an attempt's end names its lease), so neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class Lease:
    """Names one attempt: every write an attempt makes is conditional on all three."""

    job_id: str
    owner: UUID
    attempt: int
