"""The SQL-level producer API (migration 0005): schedule_job, schedule_jobs, cancel_job and
retry_job carry the Python API's semantics and validation, with a SQLSTATE per error."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial

import asyncpg
import pytest

from scheduler import JobPriority, JobStatus, Scheduler
from scheduler.postgres.sql import channel_for, quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import count_jobs, has_status, holds, wait_until

RECORD = "tests.support.jobs:record"


async def job_row(pool: asyncpg.Pool, schema: str, job_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        f"SELECT * FROM {quote_identifier(schema)}.jobs WHERE job_id = $1", job_id
    )
    assert row is not None
    return row


async def claim_by_sql_worker(pool: asyncpg.Pool, schema: str, job_id: str) -> str:
    """Make `job_id` running under a worker registered through SQL; returns the worker."""
    q = quote_identifier(schema)
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1])", RECORD)
    claimed = await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 100)", worker)
    assert job_id in [r["job_id"] for r in claimed]
    return str(worker)


async def test_schedule_job_stores_what_schedule_stores(pool: asyncpg.Pool, migrated: str) -> None:
    q = quote_identifier(migrated)
    when = datetime.now(timezone.utc) + timedelta(hours=2)
    job_id = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, args => $2::jsonb, kwargs => $3::jsonb, run_at => $4,"
        " job_id => 'sql-1', priority => 20, max_retries => 3, timeout => '90 seconds')",
        RECORD,
        '["k", 1]',
        '{"value": {"nested": [true, null]}}',
        when,
    )
    assert job_id == "sql-1"
    job = await Scheduler(pool, schema=migrated).get_job("sql-1")
    assert job is not None
    assert (
        job.task_name,
        job.args,
        job.kwargs,
        job.execution_time,
        job.priority,
        job.max_retries,
        job.timeout,
        job.status,
    ) == (
        RECORD,
        ("k", 1),
        {"value": {"nested": [True, None]}},
        when,
        JobPriority.CRITICAL,
        3,
        90.0,
        JobStatus.PENDING,
    )


async def test_defaults_a_generated_id_due_now_and_a_delay_from_the_database_clock(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    async with pool.acquire() as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        first = await conn.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
        later = await conn.fetchval(f"SELECT {q}.schedule_job($1, delay => '5 minutes')", RECORD)
    assert first != later and len(first) == 36
    row = await job_row(pool, migrated, first)
    assert (row["execution_time"], row["priority"], row["max_retries"], row["args"]) == (
        now,
        5,
        0,
        "[]",
    )
    assert (await job_row(pool, migrated, later))["execution_time"] == now + timedelta(minutes=5)


async def test_generated_ids_are_time_ordered_as_the_clients(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """UUID version 7, as scheduler/ids.py makes them: jobs enqueued together share the
    primary key's pages (random ids tripled the WAL per job of a drain at 1M pending)."""
    q = quote_identifier(migrated)
    first = await pool.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
    await pool.execute("SELECT pg_sleep(0.002)")  # a later millisecond
    second = await pool.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
    parsed = uuid.UUID(first)
    assert str(parsed) == first
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert first < second
    clock = await pool.fetchval("SELECT extract(epoch FROM clock_timestamp()) * 1000")
    assert abs((parsed.int >> 80) - float(clock)) < 60_000


# (arguments after the task name, SQLSTATE, message fragment): the Python API's bad-input
# list as far as SQL can express it (SQL types rule out sets, objects, NaN and naive values
# passed as timestamptz; a non-integer max_retries does not even reach the function).
BAD_SQL_INPUTS: list[tuple[str, str, str, str]] = [
    ("'rm -rf /'", "", "22023", "may contain only"),
    ("''", "", "22023", "non-empty"),
    ("NULL", "", "22023", "non-empty"),
    (f"'{RECORD}'", ", args => '{\"a\": 1}'", "22023", "args must be a JSON array"),
    (f"'{RECORD}'", ", args => '\"one\"'", "22023", "jsonb_build_array"),
    (f"'{RECORD}'", ", kwargs => '[1]'", "22023", "kwargs must be a JSON object"),
    (f"'{RECORD}'", ", args => jsonb_build_array(repeat('x', 70000))", "54000", "cap"),
    (f"'{RECORD}'", ", run_at => now(), delay => '1 second'", "22023", "not both"),
    (f"'{RECORD}'", ", run_at => 'infinity'", "22023", "must lie between"),
    # The bounds of scheduler/bounds.py (issue 19): Python's datetime range, 1000 years.
    (f"'{RECORD}'", ", run_at => '10000-01-01 00:00+00'", "22023", "9999-12-30"),
    (f"'{RECORD}'", ", run_at => '0001-01-01 00:00+00'", "22023", "0001-01-02"),
    (f"'{RECORD}'", ", delay => '1001 years'", "22023", "at most 1000 years"),
    (f"'{RECORD}'", ", delay => '200000 years'", "22023", "at most 1000 years"),
    (f"'{RECORD}'", ", timeout => '1001 years'", "22023", "at most 1000 years"),
    (f"'{RECORD}'", ", delay => '-1 second'", "22023", ">= 0"),
    (f"'{RECORD}'", ", max_retries => -1", "22023", "max_retries"),
    (f"'{RECORD}'", ", max_retries => NULL", "22023", "max_retries"),
    (f"'{RECORD}'", ", priority => 7", "22023", "unknown priority"),
    (f"'{RECORD}'", ", timeout => '0 seconds'", "22023", "timeout"),
    (f"'{RECORD}'", ", timeout => '-5 seconds'", "22023", "timeout"),
    (f"'{RECORD}'", ", job_id => ''", "22023", "job_id"),
    (f"'{RECORD}'", ", job_id => repeat('x', 256)", "22023", "job_id"),
    (f"'{RECORD}'", ", conflict => 'overwrite'", "22023", "conflict must be"),
]


@pytest.mark.parametrize(("task", "rest", "sqlstate", "fragment"), BAD_SQL_INPUTS)
async def test_bad_input_raises_with_a_sqlstate_and_writes_nothing(
    pool: asyncpg.Pool, migrated: str, task: str, rest: str, sqlstate: str, fragment: str
) -> None:
    q = quote_identifier(migrated)
    with pytest.raises(asyncpg.PostgresError, match=fragment) as info:
        await pool.fetchval(f"SELECT {q}.schedule_job({task}{rest})")
    assert info.value.sqlstate == sqlstate
    assert await count_jobs(pool, migrated) == 0


async def test_the_payload_cap_is_the_owners_setting(pool: asyncpg.Pool, migrated: str) -> None:
    """The cap lives in the one-row `settings` table (issue 19): the owner changes it with
    an UPDATE, within its CHECKed bounds; the old session setting changes nothing."""
    q = quote_identifier(migrated)
    assert await pool.fetchval(f"SELECT max_payload_bytes FROM {q}.settings") == 65536
    await pool.execute(f"UPDATE {q}.settings SET max_payload_bytes = 10")
    async with pool.acquire() as conn:
        await conn.execute("SET scheduler.max_payload_bytes = 100000000")
        with pytest.raises(asyncpg.ProgramLimitExceededError, match="over the cap of 10"):
            await conn.fetchval(f"SELECT {q}.schedule_job($1, '[\"0123456789\"]')", RECORD)
        await conn.execute("RESET scheduler.max_payload_bytes")
    assert await count_jobs(pool, migrated) == 0
    for out_of_bounds in (0, -1, 64 * 1024 * 1024 + 1):
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute(f"UPDATE {q}.settings SET max_payload_bytes = $1", out_of_bounds)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(f"INSERT INTO {q}.settings (max_payload_bytes) VALUES (1)")


async def test_raise_refuses_an_existing_id_and_ignore_keeps_it(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, '[\"a\"]', job_id => 'dup')", RECORD)
    before = await job_row(pool, migrated, "dup")
    with pytest.raises(asyncpg.UniqueViolationError, match="conflict => 'ignore'"):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, '[\"b\"]', job_id => 'dup')", RECORD)
    kept = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, '[\"b\"]', job_id => 'dup', priority => 20,"
        " conflict => 'ignore')",
        RECORD,
    )
    assert kept == "dup"
    assert await job_row(pool, migrated, "dup") == before


async def test_replace_overwrites_in_place_resetting_budgets_but_not_attempts(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, '[\"a\"]', job_id => 'dup')", RECORD)
    # A job that has been through attempts and ended failed.
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', attempts = 3, failures = 2, lost_leases = 1,"
        " last_error = 'boom', finished_at = now() WHERE job_id = 'dup'"
    )
    replaced = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, '[\"b\"]', job_id => 'dup', priority => 10,"
        " delay => '1 hour', conflict => 'replace')",
        RECORD,
    )
    assert replaced == "dup"
    row = await job_row(pool, migrated, "dup")
    assert (
        row["status"],
        row["args"],
        row["priority"],
        row["attempts"],
        row["failures"],
        row["lost_leases"],
        row["last_error"],
        row["finished_at"],
    ) == ("pending", '["b"]', 10, 3, 0, 0, None, None)
    assert await count_jobs(pool, migrated) == 1


async def test_replace_never_touches_a_running_job(pool: asyncpg.Pool, migrated: str) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, '[\"a\"]', job_id => 'busy')", RECORD)
    await claim_by_sql_worker(pool, migrated, "busy")
    before = await job_row(pool, migrated, "busy")
    with pytest.raises(asyncpg.ObjectInUseError, match="cancel it first"):
        await pool.fetchval(
            f"SELECT {q}.schedule_job($1, '[\"b\"]', job_id => 'busy', conflict => 'replace')",
            RECORD,
        )
    assert await job_row(pool, migrated, "busy") == before


async def test_a_batch_is_all_or_nothing_and_returns_ids_in_order(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    request = f"{q}.job_request"
    ids = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, '[1]', job_id => 'b1'),"
        f" {request}($1, '[2]'), {request}($1, '[3]', job_id => 'b3', priority => 1)])",
        RECORD,
    )
    assert ids[0] == "b1" and ids[2] == "b3" and len(ids) == 3
    assert await count_jobs(pool, migrated) == 3
    # One bad element (named by its position), a conflict, a repeated id: nothing written.
    for sql, error, fragment in [
        (
            f"ARRAY[{request}($1, job_id => 'n1'), {request}($1, priority => 2)]",
            asyncpg.InvalidParameterValueError,
            r"jobs\[2\]: unknown priority",
        ),
        (
            f"ARRAY[{request}($1, job_id => 'n2'), {request}($1, job_id => 'b3')]",
            asyncpg.UniqueViolationError,
            "'b3' already exists",
        ),
        (
            f"ARRAY[{request}($1, job_id => 'n3'), {request}($1, job_id => 'n3')]",
            asyncpg.InvalidParameterValueError,
            "appears twice",
        ),
    ]:
        with pytest.raises(error, match=fragment):
            await pool.fetchval(f"SELECT {q}.schedule_jobs({sql})", RECORD)
    assert await count_jobs(pool, migrated) == 3
    kept = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, job_id => 'n4'),"
        f" {request}($1, job_id => 'b1')], conflict => 'ignore')",
        RECORD,
    )
    assert kept == ["n4", "b1"]
    assert await pool.fetchval(f"SELECT {q}.schedule_jobs('{{}}')") == []


async def test_a_rolled_back_transaction_reserves_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'tx')", RECORD)
        await transaction.rollback()
    assert await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'tx')", RECORD) == "tx"


async def test_concurrent_schedules_of_one_id_leave_one_row(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    results = await asyncio.gather(
        *(
            pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'hot', delay => '1 min')", RECORD)
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    assert results.count("hot") == 1
    assert all(isinstance(r, asyncpg.UniqueViolationError) for r in results if r != "hot")
    assert await count_jobs(pool, migrated) == 1


async def test_cancel_job_cancels_pending_and_flags_running_with_a_notify(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'p', delay => '1h')", RECORD)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'r')", RECORD)
    await claim_by_sql_worker(pool, migrated, "r")
    heard: list[str] = []
    async with pool.acquire() as listener:
        await listener.add_listener(channel_for(migrated), lambda *a: heard.append(a[3]))
        assert await pool.fetchval(f"SELECT {q}.cancel_job('p')") == "cancelled"
        assert await pool.fetchval(f"SELECT {q}.cancel_job('r')") == "cancel_requested"
        await wait_until(lambda: holds("cancel r" in heard), message="the cancel NOTIFY")
        await listener.reset()
    pending, running = await job_row(pool, migrated, "p"), await job_row(pool, migrated, "r")
    assert pending["status"] == "cancelled" and pending["finished_at"] is not None
    assert running["status"] == "running" and running["cancel_requested_at"] is not None
    # Finished or unknown: nothing changes.
    assert await pool.fetchval(f"SELECT {q}.cancel_job('p')") is None
    assert await pool.fetchval(f"SELECT {q}.cancel_job('nope')") is None


async def test_retry_job_revives_failed_and_cancelled_jobs_with_fresh_budgets(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    for job_id in ("f", "c", "later"):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => $2)", RECORD, job_id)
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', attempts = 4, failures = 3, lost_leases = 1,"
        " last_error = 'boom', finished_at = now() WHERE job_id IN ('f', 'later')"
    )
    await pool.fetchval(f"SELECT {q}.cancel_job('c')")
    async with pool.acquire() as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        assert await conn.fetchval(f"SELECT {q}.retry_job('f')") == "pending"
        assert await conn.fetchval(f"SELECT {q}.retry_job('c')") == "pending"
        await conn.fetchval(f"SELECT {q}.retry_job('later', delay => '10 minutes')")
    retried = await job_row(pool, migrated, "f")
    assert (
        retried["status"],
        retried["attempts"],
        retried["failures"],
        retried["lost_leases"],
        retried["execution_time"],
        retried["finished_at"],
        retried["last_error"],
    ) == ("pending", 4, 0, 0, now, None, "boom")
    cancelled = await job_row(pool, migrated, "c")
    assert (cancelled["status"], cancelled["cancel_requested_at"]) == ("pending", None)
    later = await job_row(pool, migrated, "later")
    assert later["execution_time"] == now + timedelta(minutes=10)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="is pending"):
        await pool.fetchval(f"SELECT {q}.retry_job('f')")
    with pytest.raises(asyncpg.NoDataFoundError, match="no job 'nope'"):
        await pool.fetchval(f"SELECT {q}.retry_job('nope')")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="not both"):
        await pool.fetchval(f"SELECT {q}.retry_job('f', now(), '1 second')")


async def test_a_trigger_on_a_user_table_schedules_jobs_a_replica_runs(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(
        f"""
        CREATE TABLE {q}.signups (id serial PRIMARY KEY, email text NOT NULL);
        CREATE FUNCTION {q}.welcome_signup() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM {q}.schedule_job('{RECORD}', jsonb_build_array('sql-trigger-signup', NEW.email),
                                     job_id => 'welcome-' || NEW.id);
            RETURN NULL;
        END $$;
        CREATE TRIGGER signups_welcome AFTER INSERT ON {q}.signups
            FOR EACH ROW EXECUTE FUNCTION {q}.welcome_signup();
        """
    )
    scheduler = make_scheduler(tasks=[jobs.record])
    await scheduler.start()
    await pool.execute(f"INSERT INTO {q}.signups (email) VALUES ('a@example.org')")
    # The job and the row commit together: a refused schedule rolls back the insert.
    await pool.fetchval(f"SELECT {q}.schedule_job('{RECORD}', job_id => 'welcome-2')")
    with pytest.raises(asyncpg.UniqueViolationError, match="welcome-2"):
        await pool.execute(f"INSERT INTO {q}.signups (email) VALUES ('b@example.org')")
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.signups") == 1
    await wait_until(partial(has_status, scheduler, "welcome-1", JobStatus.SUCCEEDED))
    assert [c["value"] for c in jobs.calls("sql-trigger-signup")] == ["a@example.org"]
