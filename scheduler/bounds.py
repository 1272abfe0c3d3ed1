"""What the columns and Python can hold. Input is checked against these bounds before anything
is written, so every value that passes validation can be stored and read back by any replica,
and no arithmetic on it (token-bucket refill, backoff, lease + interval sums, now() + delay)
can overflow or divide by zero. `BOUNDS` at the end is the table of every numeric setting and
stored number; the SQL API (migration 0011) checks the same bounds (22023), and the tables
the claim can defend against hold them as CHECK constraints."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

#: The largest value of a PostgreSQL `integer` column (max_retries, max_running, ...).
INT32_MAX = 2**31 - 1

#: Integers in arguments: Python's default int <-> str conversion limit, so every replica
#: can encode and decode them whatever its `sys.set_int_max_str_digits` setting.
MAX_INT_DIGITS = 4300
_INT_LIMIT: int = 10**MAX_INT_DIGITS

#: Any duration (delay, timeout, grace, interval setting): 1000 years keeps `now() + d`
#: well inside both PostgreSQL's and Python's datetime range.
MAX_SECONDS = 1000 * 365.25 * 86400
MAX_SECONDS_TEXT = "1000 years"

#: A rate limit's period: from 1 ms, so rate_limit / rate_period stays a modest float.
MIN_RATE_PERIOD = 0.001

#: Job arguments and results, encoded: 64 MiB, well under jsonb's 255 MB.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

#: Job slots and prefetch of one replica: integers a float holds exactly, so the prefetch
#: arithmetic (slots * horizon / mean run time) cannot overflow. A claim takes at most
#: claim_batch_size (a SQL integer) whatever the slots.
MAX_SLOTS = 2**53

#: Execution times must lie in this range: Python's datetime stops at years 1 and 9999,
#: and a day of margin lets every time zone display the instant.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=timezone.utc)

#: Characters PostgreSQL cannot store: NUL (text and jsonb refuse it) and surrogate code
#: points (not encodable as UTF-8; an escaped pair in JSON would silently merge).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_character(text: str) -> str | None:
    """A description of the first character of `text` PostgreSQL cannot store, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"the lone surrogate {char!r}"
    return f"{what} at index {found.start()}"


def int_fits(value: int) -> bool:
    """True when an argument integer has at most `MAX_INT_DIGITS` digits."""
    return -_INT_LIMIT < value < _INT_LIMIT


@dataclass(frozen=True)
class Bound:
    """One numeric setting or stored number and the range every check enforces."""

    name: str
    where: str
    minimum: float
    maximum: float
    unit: str


_DURATION = (0.0, MAX_SECONDS, "seconds")
_COUNT = (1, INT32_MAX, "")

#: Every number a user can set or a row can hold. Python raises a `SchedulerError` subclass
#: (ConfigurationError, InvalidJobError, InvalidScheduleError) naming the range; the SQL
#: functions raise 22023. Columns: queues and task_limits have CHECKs (the new ones NOT
#: VALID: the claim treats an older out-of-range row as "paused, with a reason"), the
#: settings table and schedules have validated CHECKs (0011 fixes old schedule rows first);
#: jobs has no new CHECK (an old row would fail the bulk updates of the claim): its readers
#: cope with any stored value and its writers check the bounds.
#: Durations of 0 are allowed only where the text says ">= 0".
BOUNDS: tuple[Bound, ...] = (
    Bound("max_concurrent_jobs", "Scheduler", 1, MAX_SLOTS, ""),
    Bound("prefetch", "Scheduler", 0, MAX_SLOTS, "jobs"),
    Bound("claim_batch_size", "Scheduler", 1, INT32_MAX, "jobs"),
    Bound(
        "lease_time, heartbeat_interval (<= lease_time / 2), poll_interval,"
        " reap_interval, prune_interval, listener_check_interval,"
        " listener_check_timeout",
        "Scheduler",
        0,
        MAX_SECONDS,
        "seconds (> 0)",
    ),
    Bound(
        "shutdown_grace, retention, cancel_wait, unrunnable_job_timeout", "Scheduler", *_DURATION
    ),
    Bound("orphan_retries", "Scheduler", 0, INT32_MAX, ""),
    Bound("max_payload_bytes, max_result_bytes", "Scheduler", 1, MAX_PAYLOAD_BYTES, "bytes"),
    Bound(
        "process_pool_size (<= max_concurrent_jobs), process_max_jobs_per_child,"
        " process_max_memory_per_child_mb",
        "Scheduler",
        *_COUNT,
    ),
    Bound("RetryBackoff base, maximum", "RetryBackoff", *_DURATION),
    Bound(
        "RetryBackoff factor",
        "RetryBackoff",
        1,
        float("inf"),
        "(the exponent is capped at 64, an overflow gives `maximum`)",
    ),
    Bound("max_retries", "@task, schedule(), schedule_job(), add_schedule()", 0, INT32_MAX, ""),
    Bound(
        "timeout",
        "@task, schedule(), schedule_job(), add_schedule()",
        0,
        MAX_SECONDS,
        "seconds (> 0)",
    ),
    Bound("delay", "schedule(), schedule_job(), retry_job(), snooze", *_DURATION),
    Bound(
        "execution_time / run_at / retry_at",
        "schedule(), schedule_job(), retry_job(), fail_job()",
        EARLIEST_TIME.timestamp(),
        LATEST_TIME.timestamp(),
        "epoch seconds (years 1-9999)",
    ),
    Bound("priority", "everywhere", 1, 20, "one of 1, 5, 10, 20"),
    Bound("misfire_grace_time, jitter", "add_schedule()", *_DURATION),
    Bound("max_running", "add_schedule()", *_COUNT),
    Bound(
        "interval trigger (every)",
        "IntervalTrigger, add_schedule()",
        0,
        MAX_SECONDS,
        "seconds (> 0)",
    ),
    Bound(
        "concurrency_limit, rate_limit, rate_burst",
        "set_queue_limits(), set_task_limits(), queues, task_limits",
        *_COUNT,
    ),
    Bound(
        "rate_period",
        "set_queue_limits(), set_task_limits(), queues, task_limits",
        MIN_RATE_PERIOD,
        MAX_SECONDS,
        "seconds",
    ),
    Bound("max_payload_bytes (SQL API)", "settings table", 1, MAX_PAYLOAD_BYTES, "bytes"),
    Bound("lease", "register_worker(), worker_heartbeat()", 0, MAX_SECONDS, "seconds (> 0)"),
    Bound("max_jobs", "claim_jobs()", 1, 1000, "jobs"),
    Bound("max_jobs", "retry_failed_jobs()", 1, 100000, "jobs"),
)
