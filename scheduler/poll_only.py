"""Poll-only replicas: `Scheduler(pool, listen=False)` runs on one server connection.

A started scheduler normally holds one connection of its pool for LISTEN (wake-ups, cancel
requests, schedule changes, finished jobs): two connections at least per replica, 128 for
64 replicas, more than a server with `max_connections = 100` has. With `listen=False` it
opens no listening connection at all; instead:

* the dispatcher and the ticker look at the tables every `poll_interval` (1 s by default in
  this mode, 30 s with a listener), and as before at once after a full claim and at the
  next due time they learned from the database;
* cancel requests reach a running job with the next heartbeat (its reply carries them),
  within `heartbeat_interval`, instead of at once;
* `wait_for_job()` in that process polls (on a pool of one) or opens the producers' shared
  LISTEN for the length of the wait (on a larger pool), as in a process never started.

Everything else is unchanged: every statement borrows a connection with a deadline and
hands it back, so on a pool of one the claims, outcome writes, heartbeats and housekeeping
passes take turns on the one connection (the kept connections of the per-job path are
never kept while the pool is exhausted, and a pool of one always is while one is held).
Leases, heartbeats and the fence are the same: the heartbeat's own deadline (the fence
time) covers its wait for the connection.
"""

from __future__ import annotations

from typing import Any

from scheduler.errors import ConfigurationError

#: How often a poll-only replica looks for due jobs and schedules unless told otherwise.
POLL_ONLY_INTERVAL = 1.0
#: The backstop poll of a replica whose listener wakes it.
LISTENING_POLL_INTERVAL = 30.0


def default_poll_interval(listen: object) -> float:
    """`poll_interval` when none is given: a backstop beside a listener, the wake-up
    itself without one."""
    return LISTENING_POLL_INTERVAL if listen is not False else POLL_ONLY_INTERVAL


def validate_listen(listen: object) -> None:
    if not isinstance(listen, bool):
        raise ConfigurationError(
            f"listen must be True (a LISTEN connection wakes the replica) or False (poll"
            f" every poll_interval, no listening connection), got {listen!r}"
        )


def check_listen_dsn(listen: bool, listen_dsn: str | None) -> None:
    """`listen_dsn` says where the listener connects: with no listener it is a mistake."""
    if not listen and listen_dsn is not None:
        raise ConfigurationError(
            "listen=False opens no LISTEN connection, so listen_dsn would never be used:"
            " drop listen_dsn, or keep listen=True to listen through it"
        )


def min_pool_size(listen: bool) -> int:
    """The smallest pool a started scheduler runs on: one listener plus one for the rest,
    or, without a listener, the one connection every statement takes turns on."""
    return 2 if listen else 1


def check_pool_size(pool: Any, listen: bool) -> None:
    """Raise ConfigurationError if `pool` is too small for a started scheduler."""
    check_max_size(pool.get_max_size(), listen)


def check_max_size(size: int, listen: bool) -> None:
    """Raise ConfigurationError if a pool of `size` is too small for a started scheduler
    (the CLI asks before it connects)."""
    needed = min_pool_size(listen)
    if size >= needed:
        return
    raise ConfigurationError(
        f"a started scheduler needs a pool of at least {needed} connections (one listens"
        f" for wake-ups), this one has max_size={size}; create the pool with a larger"
        " max_size, or run without a listener on a pool of one: Scheduler(...,"
        " listen=False) or `scheduler worker --no-listen`, which polls every"
        " poll_interval (a producer that never starts"
        " can use a pool of one either way)"
    )
