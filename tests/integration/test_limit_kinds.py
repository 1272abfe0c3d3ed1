"""Issue 20: a limit kind is its module and one SQL file. Limits are rows of `limits`, one
per kind; the claim, set_limit(), the views and the Python API name no kind.

The proof: a kind this package does not ship, 'total' (at most N starts ever), made here
the way a kind is made (a `Limit` subclass and a SQL file of four functions), is set,
enforced by the claim among racing claimers, shown by queue_stats() and removed, with no
other code touched."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import ClassVar

import asyncpg
import pytest

from scheduler import ConcurrencyLimit, ConfigurationError, Limit, RateLimit
from scheduler.limits.base import check_count
from scheduler.postgres.sql import quote_identifier, render
from scheduler.postgres.store import PostgresJobStore
from tests.conftest import SchedulerFactory
from tests.support.claims import claim

TASK = "tests.support.jobs:record"


@dataclass(frozen=True)
class TotalLimit(Limit):
    """At most `total_limit` jobs start, ever (a kind made for this test)."""

    kind: ClassVar[str] = "total"
    total_limit: int

    def __post_init__(self) -> None:
        check_count("total_limit", self.total_limit)


#: The kind's SQL file, as scheduler/postgres/functions/limit_total.sql would hold it.
LIMIT_TOTAL_SQL = """
CREATE OR REPLACE FUNCTION {schema}.limit_total_problem(settings jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT {schema}.limit_count_problem('total_limit', $1 -> 'total_limit', NULL)
$$;
CREATE OR REPLACE FUNCTION {schema}.limit_total_room(
    settings jsonb, state jsonb, running bigint, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT (($1 ->> 'total_limit')::bigint - coalesce(($2 ->> 'started')::bigint, 0))::float8
$$;
CREATE OR REPLACE FUNCTION {schema}.limit_total_spend(
    settings jsonb, state jsonb, started bigint, at timestamptz
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('started', coalesce(($2 ->> 'started')::bigint, 0) + $3)
$$;
CREATE OR REPLACE FUNCTION {schema}.limit_total_wait(
    settings jsonb, state jsonb, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT NULL::float8
$$;
"""


async def enqueue(pool: asyncpg.Pool, schema: str, count: int, queue: str) -> None:
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs (task_name, queue)"
        " SELECT $1, $2 FROM generate_series(1, $3)",
        TASK,
        queue,
        count,
    )


async def test_a_new_kind_is_its_class_and_its_sql_file(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    # Before its file is applied the database refuses the kind, and writes nothing.
    with pytest.raises(ConfigurationError, match="no limit kind 'total'"):
        await scheduler.set_limit(TotalLimit(3), queue="metered")
    await pool.execute(render(LIMIT_TOTAL_SQL, migrated))

    await scheduler.set_limit(TotalLimit(3), queue="metered")
    await enqueue(pool, migrated, 10, "metered")
    await enqueue(pool, migrated, 4, "default")
    store = PostgresJobStore(pool, migrated)
    owners = [uuid.uuid4() for _ in range(4)]
    for owner in owners:
        await store.register_worker(owner, "host", 1, [TASK], 30, ["default", "metered"])
    # Racing claimers: three of the queue's jobs start, however the claims interleave,
    # and the unlimited queue's jobs all do.
    claims = await asyncio.gather(
        *(claim(store, o, [TASK], 10, 0.0, ["default", "metered"]) for o in owners)
    )
    again = await claim(store, owners[0], [TASK], 10, 0.0, ["default", "metered"])
    q = quote_identifier(migrated)
    started = await pool.fetch(
        f"SELECT queue, count(*) AS n FROM {q}.jobs WHERE status = 'running' GROUP BY queue"
    )
    assert {r["queue"]: r["n"] for r in started} == {"default": 4, "metered": 3}
    assert sum(map(len, claims)) + len(again) == 7

    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["metered"].all_limits == (TotalLimit(3),)
    assert stats["metered"].problem is None
    state = await pool.fetchval(f"SELECT state::text FROM {q}.limits WHERE kind = 'total'")
    assert state == '{"started": 3}'

    # Removed, the queue's other jobs start.
    await scheduler.remove_limit(TotalLimit, queue="metered")
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.limits") == 0
    more = await claim(store, owners[1], [TASK], 10, 0.0, ["default", "metered"])
    assert len(more) == 7


async def test_limits_of_every_kind_are_rows_and_the_old_api_sets_two_of_them(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[])
    await scheduler.set_queue_limits("mail", concurrency_limit=2, rate_limit=10, rate_period=60)
    await scheduler.set_limit(RateLimit(5, 1.0, 2), task_name=TASK)
    q = quote_identifier(migrated)
    rows = await pool.fetch(
        f"SELECT scope, name, kind, settings::text FROM {q}.limits ORDER BY 1, 2, 3"
    )
    assert [tuple(r) for r in rows] == [
        ("queue", "mail", "concurrency", '{"concurrency_limit": 2}'),
        ("queue", "mail", "rate", '{"rate_burst": 1, "rate_limit": 10, "rate_period": 60}'),
        ("task", TASK, "rate", '{"rate_burst": 2, "rate_limit": 5, "rate_period": 1.0}'),
    ]
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["mail"].all_limits == (ConcurrencyLimit(2), RateLimit(10, 60.0, 1))
    assert (stats["mail"].limits.concurrency_limit, stats["mail"].limits.rate_limit) == (2, 10)
    (task,) = await scheduler.task_limits()
    assert task.all_limits == (RateLimit(5, 1.0, 2),) and task.limits.rate_burst == 2
    # set_queue_limits() replaces its two kinds and leaves others; None removes them.
    await scheduler.set_queue_limits("mail", concurrency_limit=3)
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["mail"].all_limits == (ConcurrencyLimit(3),)


async def test_new_settings_start_the_bucket_afresh_and_the_same_keep_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[])
    q = quote_identifier(migrated)
    await scheduler.set_limit(RateLimit(1, 3600.0), queue="slow")
    spent = '{"tokens": 0, "refilled_at": 0}'
    await pool.execute(f"UPDATE {q}.limits SET state = $1::jsonb", spent)
    await scheduler.set_limit(RateLimit(1, 3600.0), queue="slow")
    assert await pool.fetchval(f"SELECT state::text FROM {q}.limits") == spent
    await scheduler.set_limit(RateLimit(2, 3600.0), queue="slow")
    assert await pool.fetchval(f"SELECT state FROM {q}.limits") is None


BROKEN_KIND_SQL = """
CREATE OR REPLACE FUNCTION {schema}.limit_broken_problem(settings jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT NULL::text $$;
CREATE OR REPLACE FUNCTION {schema}.limit_broken_room(
    settings jsonb, state jsonb, running bigint, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$ SELECT 1 / (($1 ->> 'zero')::float8) $$;
CREATE OR REPLACE FUNCTION {schema}.limit_broken_spend(
    settings jsonb, state jsonb, started bigint, at timestamptz
) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT $2 $$;
CREATE OR REPLACE FUNCTION {schema}.limit_broken_wait(
    settings jsonb, state jsonb, at timestamptz
) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT NULL::float8 $$;
"""


async def test_a_kind_whose_function_fails_pauses_only_its_queue(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """One bad kind (its room function divides by zero) stops only the work it governs:
    the claim goes on for the other queues, and the queue's problem says so."""
    q = quote_identifier(migrated)
    await pool.execute(render(BROKEN_KIND_SQL, migrated))
    await pool.execute(
        f"INSERT INTO {q}.limits (scope, name, kind, settings)"
        """ VALUES ('queue', 'metered', 'broken', '{"zero": 0}')"""
    )
    await enqueue(pool, migrated, 3, "metered")
    await enqueue(pool, migrated, 2, "default")
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    await store.register_worker(owner, "host", 1, [TASK], 30, ["default", "metered"])
    claimed = await claim(store, owner, [TASK], 10, 0.0, ["default", "metered"])
    assert len(claimed) == 2
    problem = await pool.fetchval(f"SELECT problem FROM {q}.queue_stats WHERE queue = 'metered'")
    assert problem is None  # its settings are fine: the view asks only limit_problem()
    rows = await pool.fetch(
        f"SELECT kind, problem FROM {q}.claim_flow_jobs($1, ARRAY[$2], ARRAY['metered'], 10)"
        " WHERE kind = 'problem'",
        owner,
        TASK,
    )
    assert [r["problem"] for r in rows] == [
        "queue 'metered': limit kind 'broken' could not say how many may start"
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.set_limit(ConcurrencyLimit(1)), "exactly one of queue= and task_name="),
        (
            lambda s: s.set_limit(ConcurrencyLimit(1), queue="a", task_name="b"),
            "exactly one of queue= and task_name=",
        ),
        (lambda s: s.set_limit(ConcurrencyLimit(1), queue=""), "queue must be a text of 1 to 255"),
        (lambda s: s.set_limit(ConcurrencyLimit(1), queue="a\x00"), "without NUL"),
        (lambda s: s.set_limit(ConcurrencyLimit(1), task_name="t" * 256), "task_name must be"),
        (lambda s: s.set_limit("concurrency", queue="a"), "limit must be a limit kind"),
        (lambda s: s.remove_limit(Limit, queue="a"), "kind must be a limit kind"),
        (lambda s: s.remove_limit("rate", queue="a"), "kind must be a limit kind"),
    ],
)
async def test_set_limit_refuses_what_it_cannot_store_and_writes_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, call: object, message: str
) -> None:
    scheduler = make_scheduler(tasks=[])
    with pytest.raises(ConfigurationError, match=message):
        await call(scheduler)  # type: ignore[operator]
    q = quote_identifier(migrated)
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.limits") == 0
