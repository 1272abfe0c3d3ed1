"""Issue 19, item 2: every number has bounds, and one bad row stops only what it governs.

`set_queue_limits("x", rate_limit=5, rate_period=1e-310)` used to be accepted, after which
every claim of every replica working queue `x` failed with a float overflow. Now the API
refuses it (Python: ConfigurationError; SQL: 22023) and writes nothing, and a limit row that
holds it anyway (written by hand, or before migration 0011) only pauses its queue or task,
with the reason in queue_stats(), task_limits() and the log. Since 0017 a limit is a row of
`limits` whose settings are JSON the table does not check (it knows no kind): the kind's
problem function judges them, in set_limit() and in every claim."""

from __future__ import annotations

import itertools
import json
import logging
import math
import uuid
from functools import partial

import asyncpg
import pytest

from scheduler import ConfigurationError, IntervalTrigger, JobStatus
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import has_status, wait_until
from tests.support.schema_catalog import install_head

TASK = "tests.support.jobs:record"
OTHER = "tests.support.jobs:record_sync"
PROBLEM_LOG = "out-of-range limit row"

#: rate_period values out of bounds: the issue's denormal, just under 1 ms, zero, negative,
#: NaN, infinities, just over 1000 years.
BAD_PERIODS = [1e-310, 0.0009, 0.0, -1.0, math.nan, math.inf, -math.inf, 31557600000.5]


async def write_limit(
    pool: asyncpg.Pool, schema: str, scope: str, name: str, kind: str, settings: str
) -> None:
    """A limit row as a hand could write it, past set_limit()'s checks."""
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.limits (scope, name, kind, settings, state)"
        " VALUES ($1, $2, $3, $4::jsonb,"
        " jsonb_build_object('tokens', 0, 'refilled_at', extract(epoch FROM now()) - 3600))",
        scope,
        name,
        kind,
        settings,
    )


# The issue's row, with a bucket that last refilled an hour ago: its refill is
# 3600 * 5 / 1e-310, which overflowed in every claim.
ISSUE_ROW = '{"rate_limit": 5, "rate_period": 1e-310, "rate_burst": 1}'


async def test_a_bad_limit_row_pauses_only_its_queue_and_task_with_the_reason_shown(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler.store")
    await write_limit(pool, migrated, "queue", "x", "rate", ISSUE_ROW)
    await write_limit(pool, migrated, "task", OTHER, "concurrency", '{"concurrency_limit": 3}')
    rate = '{"rate_limit": 5, "rate_period": "NaN", "rate_burst": 1}'
    await write_limit(pool, migrated, "task", OTHER, "rate", rate)
    key = f"bounds-{uuid.uuid4().hex}"
    scheduler = make_scheduler(tasks=[jobs.record, jobs.record_sync], queues=["default", "x"])
    await scheduler.start()
    governed_queue = await scheduler.schedule(jobs.record, args=(key,), queue="x")
    governed_task = await scheduler.schedule(jobs.record_sync, args=(key,))
    for round_ in range(3):  # several claims: the replica goes on claiming other work
        free = [await scheduler.schedule(jobs.record, args=(key, round_)) for _ in range(3)]
        for job_id in free:
            await wait_until(partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED))
    for job_id in (governed_queue, governed_task):
        job = await scheduler.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING

    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["x"].problem is not None and "rate_period" in stats["x"].problem
    assert stats["x"].due_now == 1
    assert stats["default"].problem is None
    tasks = {t.task_name: t for t in await scheduler.task_limits()}
    task_problem = tasks[OTHER].problem
    assert task_problem is not None and "rate_period" in task_problem
    # Once per row, not once per claim.
    warnings = [r.getMessage() for r in caplog.records if PROBLEM_LOG in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert any("queue 'x'" in w for w in warnings)
    assert any(f"task '{OTHER}'" in w for w in warnings)

    # Fixed through the API, the queue's and the task's jobs run.
    await scheduler.set_queue_limits("x", rate_limit=5, rate_period=1)
    await scheduler.set_task_limits(OTHER, concurrency_limit=3)
    assert all(t.problem is None for t in await scheduler.task_limits())
    for job_id in (governed_queue, governed_task):
        await wait_until(partial(has_status, scheduler, job_id, JobStatus.SUCCEEDED))
    assert all(s.problem is None for s in await scheduler.queue_stats())


async def test_the_sql_worker_protocol_claims_past_a_bad_limit_row(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """claim_jobs() of a foreign worker goes through claim_flow_jobs(): the bad row of
    queue x neither fails it nor lets x's job out."""
    q = quote_identifier(migrated)
    await write_limit(pool, migrated, "queue", "x", "rate", ISSUE_ROW)
    held = await pool.fetchval(f"SELECT {q}.schedule_job($1, queue => 'x')", TASK)
    free = await pool.fetchval(f"SELECT {q}.schedule_job($1)", TASK)
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1])", TASK)
    rows = await pool.fetch(
        f"SELECT job_id FROM {q}.claim_jobs($1, max_jobs => 10,"
        " queue_names => ARRAY['default', 'x'])",
        worker,
    )
    assert [r["job_id"] for r in rows] == [free]
    assert await pool.fetchval(f"SELECT status FROM {q}.jobs WHERE job_id = $1", held) == (
        "pending"
    )
    problem = await pool.fetchval(f"SELECT problem FROM {q}.queue_stats WHERE queue = 'x'")
    assert "rate_period" in problem


#: Settings a hand could write: every bound's neighbours, wrong types, missing keys.
HOSTILE_RATE_SETTINGS = [
    '{"rate_limit": 5, "rate_period": 1e-310, "rate_burst": 1}',
    '{"rate_limit": 5, "rate_period": "NaN", "rate_burst": 1}',
    '{"rate_limit": 5, "rate_period": 1e400, "rate_burst": 1}',
    '{"rate_limit": 0, "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 2147483648, "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 1e400, "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 1.5, "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 5.0, "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 5, "rate_period": 1, "rate_burst": 1, "rate_limt": 5}',
    '{"rate_limit": "5", "rate_period": 1, "rate_burst": 1}',
    '{"rate_limit": 5, "rate_period": 1, "rate_burst": -1}',
    '{"rate_limit": 5, "rate_period": 1, "rate_burst": null}',
    '{"rate_limit": 5, "rate_period": [1], "rate_burst": 1}',
    '{"rate_limit": 5}',
    "{}",
    "[]",
    "5",
]
#: States a hand could write; the bucket's own are {"tokens": t, "refilled_at": epoch}.
HOSTILE_STATES = [
    None,
    "{}",
    "[]",
    '{"tokens": "x", "refilled_at": 0}',
    '{"tokens": 1e400, "refilled_at": 0}',
    '{"tokens": -1e400, "refilled_at": -1e400}',
    '{"tokens": 0.5, "refilled_at": 1e20}',
    '{"tokens": 0.5, "refilled_at": -1e20}',
    '{"tokens": 3.5, "refilled_at": 0}',
    '{"tokens": -1, "refilled_at": 4102444800}',
    '{"tokens": -1e300, "refilled_at": 0}',
]
#: Concurrency settings a hand could write.
HOSTILE_CONCURRENCY_SETTINGS = [
    '{"concurrency_limit": 0}',
    '{"concurrency_limit": 5.0}',
    '{"concurrency_limit": 2147483648}',
    '{"concurrency_limit": "5"}',
    '{"concurrency_limit": null}',
    '{"concurrency_limit": 5, "concurency_limit": 1}',
    '{"limit": 5}',
    "[5]",
]
GOOD_RATE_SETTINGS: list[dict[str, float]] = [
    {"rate_limit": 2**31 - 1, "rate_period": 0.001, "rate_burst": 2**31 - 1},
    {"rate_limit": 1, "rate_period": 31557600000, "rate_burst": 1},
    {"rate_limit": 5, "rate_period": 1, "rate_burst": 3},
]


async def test_a_rate_bucket_never_fails_whatever_a_row_holds(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """Hostile settings get a problem (not an error); in-bounds settings with any state
    give a finite room in [0, burst], a spend and a wait, never an error."""
    q = quote_identifier(migrated)
    hostile_rows = [("rate", x) for x in HOSTILE_RATE_SETTINGS]
    hostile_rows += [("concurrency", x) for x in HOSTILE_CONCURRENCY_SETTINGS]
    for kind, hostile in hostile_rows:
        problem = await pool.fetchval(f"SELECT {q}.limit_problem($1, $2::jsonb)", kind, hostile)
        assert problem is not None, hostile
        # The claim's question gets "cannot say", never an error, for any of them.
        room = await pool.fetchval(
            f"SELECT ({q}.limit_rooms($1, ARRAY[$2::jsonb], ARRAY[NULL::jsonb], ARRAY[0::bigint],"
            " now()))[1]",
            kind,
            hostile,
        )
        assert math.isnan(room), (hostile, room)
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await pool.execute(f"SELECT {q}.set_limit('queue', 'q', $1, $2::jsonb)", kind, hostile)
    for settings, state in itertools.product(GOOD_RATE_SETTINGS, HOSTILE_STATES):
        args = (json.dumps(settings), state)
        assert await pool.fetchval(f"SELECT {q}.limit_problem('rate', $1::jsonb)", args[0]) is None
        row = await pool.fetchrow(
            f"SELECT ({q}.limit_rooms('rate', ARRAY[$1::jsonb], ARRAY[$2::jsonb], ARRAY[0::bigint],"
            " now()))[1] AS room,"
            f" {q}.limit_spend('rate', $1::jsonb, $2::jsonb, 1, now())::text AS spent,"
            f" {q}.limit_wait('rate', $1::jsonb, $2::jsonb, now()) AS wait",
            *args,
        )
        assert row is not None
        assert math.isfinite(row["room"]) and 0 <= row["room"] <= settings["rate_burst"], row
        assert row["wait"] is None or (math.isfinite(row["wait"]) and row["wait"] > 0), row
        spent = json.loads(row["spent"])
        assert math.isfinite(spent["tokens"]) and math.isfinite(spent["refilled_at"]), row


async def test_a_count_written_as_a_decimal_pauses_only_its_queue(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """{"concurrency_limit": 5.0} equals 5 but is no integer literal: it used to pass the
    check and then fail the cast of every claim of the queue's workers, and queue_stats
    for everyone. It is a problem of its row now."""
    await write_limit(pool, migrated, "queue", "x", "concurrency", '{"concurrency_limit": 5.0}')
    rate = '{"rate_limit": 2.0, "rate_period": 1, "rate_burst": 1}'
    await write_limit(pool, migrated, "queue", "y", "rate", rate)
    scheduler = make_scheduler(tasks=[jobs.record], queues=["default", "x", "y"])
    await scheduler.start()
    held = [await scheduler.schedule(jobs.record, args=("dec",), queue=q) for q in ("x", "y")]
    free = await scheduler.schedule(jobs.record, args=("dec",))
    await wait_until(partial(has_status, scheduler, free, JobStatus.SUCCEEDED))
    for job_id in held:
        job = await scheduler.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert "must be an integer" in (stats["x"].problem or "")
    assert "must be an integer" in (stats["y"].problem or "")


async def test_a_limit_of_a_kind_this_schema_lacks_pauses_its_queue_with_the_reason(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A row a newer release wrote, of a kind with no functions here: its queue waits,
    the others run, and the reason says what to do; set_limit() refuses that kind."""
    q = quote_identifier(migrated)
    await write_limit(pool, migrated, "queue", "x", "quota", '{"per_day": 10}')
    scheduler = make_scheduler(tasks=[jobs.record], queues=["default", "x"])
    await scheduler.start()
    held = await scheduler.schedule(jobs.record, args=("kind",), queue="x")
    free = await scheduler.schedule(jobs.record, args=("kind",))
    await wait_until(partial(has_status, scheduler, free, JobStatus.SUCCEEDED))
    job = await scheduler.get_job(held)
    assert job is not None and job.status is JobStatus.PENDING
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["x"].problem is not None and "no limit kind 'quota'" in stats["x"].problem
    assert [type(x).__name__ for x in stats["x"].all_limits] == ["StoredLimit"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="no limit kind 'quota'"):
        await pool.execute(f"SELECT {q}.set_limit('queue', 'y', 'quota', '{{}}')")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="no limit kind"):
        await pool.execute(f"SELECT {q}.set_limit('queue', 'y', 'x); DROP TABLE jobs; --', '{{}}')")
    # Removing the row lets the queue's job run.
    await pool.execute(f"SELECT {q}.set_limit('queue', 'x', 'quota', NULL)")
    await wait_until(partial(has_status, scheduler, held, JobStatus.SUCCEEDED))


@pytest.mark.parametrize("period", BAD_PERIODS)
async def test_an_out_of_range_rate_period_is_refused_everywhere_and_writes_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, period: float
) -> None:
    q = quote_identifier(migrated)
    scheduler = make_scheduler()
    with pytest.raises(ConfigurationError, match=r"rate_period must be seconds from 0\.001"):
        await scheduler.set_queue_limits("x", rate_limit=5, rate_period=period)
    with pytest.raises(ConfigurationError, match=r"rate_period must be seconds from 0\.001"):
        await scheduler.set_task_limits(TASK, rate_limit=5, rate_period=period)
    for function, name in (("set_queue_limits", "x"), ("set_task_limits", TASK)):
        with pytest.raises(asyncpg.InvalidParameterValueError, match=r"from 0\.001"):
            await pool.execute(
                f"SELECT {q}.{function}($1, rate_limit => 5, rate_period => $2)", name, period
            )
    with pytest.raises(asyncpg.InvalidParameterValueError, match=r"from 0\.001"):
        await pool.execute(
            f"SELECT {q}.set_limit('queue', 'x', 'rate', jsonb_build_object('rate_limit', 5,"
            " 'rate_period', $1::float8, 'rate_burst', 1))",
            period,
        )
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.queues") == 0
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.limits") == 0


async def test_the_bounds_themselves_are_accepted(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await scheduler.set_queue_limits(
        "fast",
        concurrency_limit=2**31 - 1,
        rate_limit=2**31 - 1,
        rate_period=0.001,
        rate_burst=2**31 - 1,
    )
    await scheduler.set_queue_limits("slow", rate_limit=1, rate_period=31557600000)
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["fast"].problem is None and stats["slow"].problem is None


SQL_OUT_OF_RANGE = [
    ("retry_job('j', delay => '1001 years')", "delay must be from 0 to 1000 years"),
    ("retry_job('j', run_at => '10000-01-01 00:00+00')", "9999-12-30"),
    (
        "fail_job('00000000-0000-0000-0000-000000000000', 'j', 1, 'e',"
        " retry_at => '10000-01-01 00:00+00')",
        "9999-12-30",
    ),
    ("register_worker(ARRAY['t:f'], lease => '1001 years')", "at most 1000 years"),
    ("register_worker(ARRAY['t:f'], lease => '0 seconds')", "lease must be > 0"),
    (
        "worker_heartbeat('00000000-0000-0000-0000-000000000000', lease => '1001 years')",
        "at most 1000 years",
    ),
    ("add_schedule('s', 't:f', every => '1001 years')", "at most 1000 years"),
    ("add_schedule('s', 't:f', every => '1 hour', jitter => '1001 years')", "jitter"),
    ("add_schedule('s', 't:f', every => '1 hour', misfire_grace => '1001 years')", "misfire"),
    ("add_schedule('s', 't:f', every => '1 hour', timeout => '1001 years')", "timeout"),
    ("set_queue_limits('q', rate_burst => 0)", "rate_burst"),
    ("set_task_limits('t:f', concurrency_limit => 0)", "concurrency_limit"),
]


@pytest.mark.parametrize(("call", "fragment"), SQL_OUT_OF_RANGE)
async def test_the_sql_api_refuses_out_of_range_numbers_with_22023_and_writes_nothing(
    pool: asyncpg.Pool, migrated: str, call: str, fragment: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, status, finished_at)"
        " VALUES ('j', 't:f', 'failed', now())"
    )
    before = await pool.fetchval(
        f"SELECT (SELECT count(*) FROM {q}.workers) + (SELECT count(*) FROM {q}.schedules)"
        f" + (SELECT count(*) FROM {q}.queues) + (SELECT count(*) FROM {q}.limits)"
    )
    with pytest.raises(asyncpg.InvalidParameterValueError, match=fragment):
        await pool.execute(f"SELECT {q}.{call}")
    after = await pool.fetchval(
        f"SELECT (SELECT count(*) FROM {q}.workers) + (SELECT count(*) FROM {q}.schedules)"
        f" + (SELECT count(*) FROM {q}.queues) + (SELECT count(*) FROM {q}.limits)"
    )
    assert after == before == 0
    assert await pool.fetchval(f"SELECT status FROM {q}.jobs WHERE job_id = 'j'") == "failed"


async def test_a_database_holding_a_bad_row_upgrades_and_keeps_claiming(
    pool: asyncpg.Pool, schema: str, make_scheduler: SchedulerFactory
) -> None:
    """A row 0010 accepted (rate_period => 1e-310) does not stop migration 0011 (its CHECK
    is NOT VALID) nor 0017 (it becomes a rate limit row as it was), and the claim treats
    the row as paused with a reason."""
    q = quote_identifier(schema)
    async with pool.acquire() as conn:
        # The last release's schema, built as its migrate did (commit d82bdda).
        assert await install_head(conn, schema, up_to=10) == 10
        await conn.execute(
            f"SELECT {q}.set_queue_limits('x', rate_limit => 5, rate_period => 1e-310)"
        )
        # 0010's add_schedule() took any jitter; no timedelta holds this one.
        await conn.execute(
            f"SELECT {q}.add_schedule('absurd', $1, every => '1 hour',"
            " jitter => '100000000 years')",
            TASK,
        )
    scheduler = make_scheduler(tasks=[jobs.record], queues=["default", "x"])
    assert await scheduler.migrate() == [m.version for m in migrations.known_migrations()][10:]
    settings = await pool.fetchval(
        f"SELECT settings::text FROM {q}.limits WHERE (scope, name) = ('queue', 'x')"
    )
    assert json.loads(settings)["rate_period"] == 1e-310
    await scheduler.start()
    held = await scheduler.schedule(jobs.record, args=("upgrade",), queue="x")
    free = await scheduler.schedule(jobs.record, args=("upgrade",))
    await wait_until(partial(has_status, scheduler, free, JobStatus.SUCCEEDED))
    job = await scheduler.get_job(held)
    assert job is not None and job.status is JobStatus.PENDING
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert stats["x"].problem is not None
    # The schedule was fixed by the migration (schedules is small): paused, with why.
    absurd = await pool.fetchrow(
        f"SELECT paused, jitter_seconds, trigger_error FROM {q}.schedules"
        " WHERE schedule_id = 'absurd'"
    )
    assert absurd is not None
    assert (absurd["paused"], absurd["jitter_seconds"]) == (True, 31557600000)
    assert absurd["trigger_error"].startswith("migration 0011 paused it")


async def test_a_schedule_row_with_an_absurd_jitter_pauses_only_that_schedule(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """add_schedule() from SQL accepted any jitter before 0011; a jitter no timedelta holds
    made every firing pass fail, so no schedule fired. Now that one is paused, with why."""
    q = quote_identifier(migrated)
    scheduler = make_scheduler(tasks=[jobs.record])
    good = await scheduler.add_schedule(jobs.record, IntervalTrigger(seconds=0.2), args=("ok",))
    bad = await scheduler.add_schedule(
        jobs.record, IntervalTrigger(seconds=0.2), args=("bad",), schedule_id="absurd"
    )
    await pool.execute(f"ALTER TABLE {q}.schedules DROP CONSTRAINT schedules_seconds_bounds")
    await pool.execute(
        f"UPDATE {q}.schedules SET jitter_seconds = 1e300 WHERE schedule_id = $1", bad
    )
    await scheduler.start()

    async def good_fired_and_bad_parked() -> bool:
        fired = await pool.fetchval(
            f"SELECT count(*) FROM {q}.jobs WHERE schedule_id = $1 AND status = 'succeeded'",
            good,
        )
        parked = await pool.fetchval(
            f"SELECT paused FROM {q}.schedules WHERE schedule_id = $1", bad
        )
        return bool(fired >= 2 and parked)

    await wait_until(good_fired_and_bad_parked)
    error = await pool.fetchval(
        f"SELECT trigger_error FROM {q}.schedule_status WHERE schedule_id = $1", bad
    )
    assert "cannot fire" in error
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE schedule_id = $1", bad) == 0


async def test_jobs_due_at_an_infinite_time_do_not_stop_the_claim(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A pending row due at ±infinity (a restore, or a hand with triggers off) made the
    claim's and the wake-up's arithmetic fail for every replica; now it just waits."""
    q = quote_identifier(migrated)
    # As a restore or a hand with triggers off could (the due-notification trigger's
    # arithmetic refuses such rows otherwise).
    await pool.execute(f"ALTER TABLE {q}.jobs DISABLE TRIGGER USER")
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name, execution_time, priority) VALUES"
        " ('past', $1, '-infinity', 20), ('future', $1, 'infinity', 20)",
        TASK,
    )
    await pool.execute(f"ALTER TABLE {q}.jobs ENABLE TRIGGER USER")
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.start()
    free = await scheduler.schedule(jobs.record, args=("finite",))
    await wait_until(partial(has_status, scheduler, free, JobStatus.SUCCEEDED))
    statuses = await pool.fetch(
        f"SELECT job_id, status FROM {q}.jobs WHERE job_id IN ('past', 'future') ORDER BY 1"
    )
    assert [tuple(r) for r in statuses] == [("future", "pending"), ("past", "pending")]
