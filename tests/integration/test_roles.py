"""Least privilege: an owner role migrates, a runtime role runs replicas with DML only, a
producer role may only call the scheduling and cancel functions and read the views, an
operator role manages schedules, queues, limits and retries (issue 19, item 5).

Roles are cluster-wide: each test creates uniquely named ones and drops them afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import astuple, dataclass
from functools import partial
from typing import Any

import asyncpg
import pytest

from scheduler import JobStatus, Scheduler
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.support import jobs
from tests.support.db import FAST, TEST_DSN, has_status, wait_until
from tests.support.schema_catalog import install_head

RECORD = "tests.support.jobs:record"


@dataclass(frozen=True)
class Roles:
    owner: str
    runtime: str
    producer: str
    operator: str
    outsider: str  # USAGE on the schema and nothing else


@pytest.fixture
async def roles(pool: asyncpg.Pool, schema: str) -> AsyncIterator[Roles]:
    """Fresh NOLOGIN roles; a DBA-made schema owned by `owner`, migrated by it, with the
    runtime and producer grants applied by it."""
    suffix = uuid.uuid4().hex[:12]
    names = Roles(*(f"sched_{kind}_{suffix}" for kind in ("own", "run", "prod", "op", "out")))
    q = quote_identifier(schema)
    for name in astuple(names):
        await pool.execute(f"CREATE ROLE {quote_identifier(name)} NOLOGIN")
    try:
        await pool.execute(f"CREATE SCHEMA {q} AUTHORIZATION {quote_identifier(names.owner)}")
        owner = await connect_as(names.owner)
        try:
            assert await migrations.migrate(owner, schema) == [
                m.version for m in migrations.known_migrations()
            ]
            await owner.execute(f"SELECT {q}.grant_runtime_role($1)", names.runtime)
            await owner.execute(f"SELECT {q}.grant_producer_role($1)", names.producer)
            await owner.execute(f"SELECT {q}.grant_operator_role($1)", names.operator)
            await owner.execute(f"GRANT USAGE ON SCHEMA {q} TO {quote_identifier(names.outsider)}")
        finally:
            await owner.close()
        yield names
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        for name in astuple(names):
            await pool.execute(f"DROP OWNED BY {quote_identifier(name)}")
            await pool.execute(f"DROP ROLE {quote_identifier(name)}")


async def connect_as(role: str) -> asyncpg.Connection:
    return await asyncpg.connect(TEST_DSN, server_settings={"role": role})


async def test_a_runtime_role_runs_replicas_and_worker_functions_but_has_no_ddl(
    schema: str, roles: Roles
) -> None:
    q = quote_identifier(schema)
    runtime_pool = await asyncpg.create_pool(
        TEST_DSN, min_size=1, max_size=6, server_settings={"role": roles.runtime}
    )
    assert runtime_pool is not None
    settings: dict[str, Any] = {**FAST, "auto_migrate": False, "tasks": [jobs.record]}
    try:
        async with Scheduler(runtime_pool, schema=schema, **settings) as replica:
            job_id = await replica.schedule(jobs.record, args=("roles-runtime",))
            await wait_until(partial(has_status, replica, job_id, JobStatus.SUCCEEDED))
        async with runtime_pool.acquire() as conn:
            assert await conn.fetchval(f"SELECT {q}.register_worker(ARRAY[$1])", RECORD)
            for ddl in (
                f"CREATE TABLE {q}.intruder (id int)",
                f"ALTER TABLE {q}.jobs ADD COLUMN intruder int",
                f"DROP VIEW {q}.task_stats",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(ddl)
    finally:
        await runtime_pool.close()


async def test_a_runtime_role_starts_with_auto_migrate_on_a_current_schema(
    schema: str, roles: Roles
) -> None:
    """`scheduler worker` always migrates: on a schema already current that must write
    nothing, or a role without CREATE rights could not start a replica at all."""
    runtime_pool = await asyncpg.create_pool(
        TEST_DSN, min_size=1, max_size=4, server_settings={"role": roles.runtime}
    )
    assert runtime_pool is not None
    try:
        settings: dict[str, Any] = {**FAST, "tasks": [jobs.record]}
        replica = Scheduler(runtime_pool, schema=schema, **settings)
        assert await replica.migrate() == []
        async with replica:
            job_id = await replica.schedule(jobs.record, args=("roles-auto-migrate",))
            await wait_until(partial(has_status, replica, job_id, JobStatus.SUCCEEDED))
    finally:
        await runtime_pool.close()


async def test_a_runtime_role_writing_only_an_error_text_gets_its_parts(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    """The sweeps and the SQL worker protocol write only the text; the triggers derive the
    type and message with error_parts(), which no role but the owner may call."""
    q = quote_identifier(schema)
    job_id = await pool.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
    runtime = await connect_as(roles.runtime)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await runtime.fetchval(f"SELECT {q}.error_parts('x')")
        await runtime.execute(
            f"UPDATE {q}.jobs SET last_error = 'lease lost\nmore' WHERE job_id = $1", job_id
        )
        await runtime.execute(
            f"INSERT INTO {q}.job_attempts (job_id, attempt, outcome, error)"
            " VALUES ($1, 1, 'failed', 'ValueError: bad')",
            job_id,
        )
        job = await runtime.fetchrow(f"SELECT error_type, error_message FROM {q}.jobs")
        attempt = await runtime.fetchrow(f"SELECT error_type, error_message FROM {q}.job_attempts")
    finally:
        await runtime.close()
    assert job is not None and (job["error_type"], job["error_message"]) == (None, "lease lost")
    assert attempt is not None
    assert (attempt["error_type"], attempt["error_message"]) == (None, "ValueError: bad")


async def test_a_producer_role_schedules_and_cancels_through_functions_only(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    q = quote_identifier(schema)
    producer = await connect_as(roles.producer)
    try:
        job_id = await producer.fetchval(f"SELECT {q}.schedule_job($1, delay => '1h')", RECORD)
        batch = await producer.fetchval(
            f"SELECT {q}.schedule_jobs(ARRAY[{q}.job_request($1), {q}.job_request($1)])", RECORD
        )
        assert len(batch) == 2
        assert await producer.fetchval(f"SELECT {q}.cancel_job($1)", job_id) == "cancelled"
        stats = await producer.fetch(f"SELECT * FROM {q}.task_stats")
        assert [(r["task_name"], r["due_now"]) for r in stats] == [(RECORD, 2)]
        for view in ("running_jobs", "stalled_jobs", "recent_failures", "live_workers"):
            await producer.fetch(f"SELECT * FROM {q}.{view}")
        for forbidden in (
            f"UPDATE {q}.jobs SET priority = 20",
            f"SELECT * FROM {q}.jobs",
            f"DELETE FROM {q}.jobs",
            f"INSERT INTO {q}.jobs (task_name) VALUES ('{RECORD}')",
            f"SELECT * FROM {q}.claim_jobs(gen_random_uuid())",
            f"SELECT {q}.retry_job('{job_id}')",
            f"SELECT {q}.register_worker(ARRAY['{RECORD}'])",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await producer.execute(forbidden)
    finally:
        await producer.close()
    # The functions are not PUBLIC: a role with only USAGE on the schema cannot schedule.
    outsider = await connect_as(roles.outsider)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await outsider.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
    finally:
        await outsider.close()
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.jobs") == 3


RUNTIME, PRODUCER, OPERATOR, OUTSIDER = "runtime", "producer", "operator", "outsider"

#: Who may EXECUTE each function of the schema besides its owner. Every function must be
#: listed: one added later without a decision here fails the test below.
EXECUTE_RIGHTS: dict[str, frozenset[str]] = {
    name: frozenset(roles)
    for name, roles in {
        # Producing: enqueue (with dependencies), cancel.
        "job_request": (RUNTIME, PRODUCER),
        "check_job_request": (RUNTIME, PRODUCER),
        "schedule_job": (RUNTIME, PRODUCER),
        "schedule_jobs": (RUNTIME, PRODUCER),
        "add_dependencies": (RUNTIME, PRODUCER),
        "cancel_job": (RUNTIME, PRODUCER, OPERATOR),
        # Operating: schedules, queues, limits, retries.
        "add_schedule": (RUNTIME, OPERATOR),
        "pause_schedule": (RUNTIME, OPERATOR),
        "resume_schedule": (RUNTIME, OPERATOR),
        "remove_schedule": (RUNTIME, OPERATOR),
        "pause_queue": (RUNTIME, OPERATOR),
        "resume_queue": (RUNTIME, OPERATOR),
        "set_queue_limits": (RUNTIME, OPERATOR),
        "set_task_limits": (RUNTIME, OPERATOR),
        "set_limit": (RUNTIME, OPERATOR),
        "retry_job": (RUNTIME, OPERATOR),
        "retry_failed_jobs": (RUNTIME, OPERATOR),
        # The worker protocol and what replicas' own queries call.
        "register_worker": (RUNTIME,),
        "worker_heartbeat": (RUNTIME,),
        "claim_jobs": (RUNTIME,),
        "complete_job": (RUNTIME,),
        "fail_job": (RUNTIME,),
        "release_job": (RUNTIME,),
        "cancel_requested_jobs": (RUNTIME,),
        "unregister_worker": (RUNTIME,),
        "claim_flow_jobs": (RUNTIME,),
        "claim_scope": (RUNTIME,),
        "readable_time": (RUNTIME,),
        # The owner's alone: grants, triggers, helpers called inside SECURITY DEFINER code.
        "grant_runtime_role": (),
        "grant_producer_role": (),
        "grant_operator_role": (),
        "check_job_basics": (),
        "set_scope_limits": (),
        "end_attempts": (RUNTIME,),
        "settle_dependants": (),
        "keep_blocked": (),
        "notify_due_jobs": (),
        "notify_cancel_requests": (),
        "notify_finished_jobs": (),
        "notify_schedules": (),
        # The error parts: the triggers are SECURITY DEFINER, so only they call it.
        "error_parts": (),
        "jobs_error_parts": (),
        "job_attempts_error_parts": (),
    }.items()
}
#: Pure, and called by the queue_stats view whoever reads it: PUBLIC. A limit kind's
#: functions and their dispatchers (limit_*), decided by name: a new kind is its file alone.
PUBLIC_PREFIX = "limit_"
EVERYONE = frozenset({RUNTIME, PRODUCER, OPERATOR, OUTSIDER})


def expected_rights(name: str) -> frozenset[str] | None:
    if name.startswith(PUBLIC_PREFIX):
        return EVERYONE
    return EXECUTE_RIGHTS.get(name)


async def execute_rights(pool: asyncpg.Pool, schema: str, roles: Roles) -> dict[str, set[str]]:
    """Per function of the schema (from the catalogue), the roles that may EXECUTE it."""
    named = {RUNTIME: roles.runtime, PRODUCER: roles.producer, OPERATOR: roles.operator}
    named[OUTSIDER] = roles.outsider
    rows = await pool.fetch(
        "SELECT p.oid, p.proname, pg_get_userbyid(p.proowner) AS owner FROM pg_proc p"
        " WHERE p.pronamespace = $1::regnamespace",
        quote_identifier(schema),
    )
    rights: dict[str, set[str]] = {}
    for row in rows:
        assert row["proname"] not in rights, f"{row['proname']} is overloaded"
        assert row["owner"] == roles.owner
        rights[row["proname"]] = {
            label
            for label, role in named.items()
            if await pool.fetchval(
                "SELECT has_function_privilege($1, $2::oid, 'EXECUTE')", role, row["oid"]
            )
        }
    return rights


async def test_every_function_grants_exactly_the_documented_roles(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    rights = await execute_rights(pool, schema, roles)
    undecided = sorted(name for name in rights if expected_rights(name) is None)
    assert not undecided, f"decide which roles may call {undecided} (EXECUTE_RIGHTS)"
    assert sorted(set(EXECUTE_RIGHTS) - set(rights)) == []
    assert any(name.startswith(PUBLIC_PREFIX) for name in rights)
    wrong = {
        name: (sorted(granted), sorted(expected_rights(name) or ()))
        for name, granted in rights.items()
        if granted != set(expected_rights(name) or ())
    }
    assert wrong == {}, "function: (granted, expected)"


async def test_upgrading_takes_from_a_producer_what_it_had_beyond_its_share(
    pool: asyncpg.Pool, schema: str
) -> None:
    """A producer granted by 0010's grant_producer_role() loses the schedule functions
    (they are the operator's now) and check_job_basics, and keeps enqueueing."""
    q = quote_identifier(schema)
    producer = f"sched_prod_{uuid.uuid4().hex[:12]}"
    await pool.execute(f"CREATE ROLE {quote_identifier(producer)} NOLOGIN")
    try:
        async with pool.acquire() as conn:
            # The last release's schema, built as its migrate did (commit d82bdda).
            assert await install_head(conn, schema, up_to=10) == 10
            await conn.execute(f"SELECT {q}.grant_producer_role($1)", producer)
        async with pool.acquire() as conn:
            assert await migrations.migrate(conn, schema) == [
                m.version for m in migrations.known_migrations()[10:]
            ]
        for name, expected in (
            ("schedule_job", True),
            ("cancel_job", True),
            ("add_dependencies", True),
            ("limit_problem", True),
            ("add_schedule", False),
            ("pause_schedule", False),
            ("resume_schedule", False),
            ("remove_schedule", False),
            ("check_job_basics", False),
        ):
            granted = await pool.fetchval(
                "SELECT has_function_privilege($1, p.oid, 'EXECUTE') FROM pg_proc p"
                " WHERE p.pronamespace = $2::regnamespace AND p.proname = $3",
                producer,
                q,
                name,
            )
            assert granted is expected, name
        web = await connect_as(producer)
        try:
            assert await web.fetchval(f"SELECT {q}.schedule_job($1)", RECORD)
            await web.fetch(f"SELECT * FROM {q}.queue_stats")
        finally:
            await web.close()
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        await pool.execute(f"DROP OWNED BY {quote_identifier(producer)}")
        await pool.execute(f"DROP ROLE {quote_identifier(producer)}")


async def test_upgrading_gives_a_runtime_role_the_functions_its_share_gained(
    pool: asyncpg.Pool, schema: str
) -> None:
    """A runtime role granted by an earlier release keeps running replicas after an upgrade
    adds a function its share includes (the claim calls end_attempts(), revision 5)."""
    q = quote_identifier(schema)
    runtime = f"sched_run_{uuid.uuid4().hex[:12]}"
    await pool.execute(f"CREATE ROLE {quote_identifier(runtime)} NOLOGIN")
    try:
        async with pool.acquire() as conn:
            assert await install_head(conn, schema, up_to=10) == 10
            await conn.execute(f"SELECT {q}.grant_runtime_role($1)", runtime)
            await migrations.migrate(conn, schema)
        assert await pool.fetchval(
            f"SELECT has_function_privilege($1, '{q}.end_attempts(text[], uuid[], integer[],"
            " text[], text[], text[], text[], text[], double precision[], integer,"
            " timestamp with time zone[])', 'EXECUTE')",
            runtime,
        )
        runtime_pool = await asyncpg.create_pool(
            TEST_DSN, min_size=1, max_size=4, server_settings={"role": runtime}
        )
        assert runtime_pool is not None
        settings: dict[str, Any] = {**FAST, "auto_migrate": False, "tasks": [jobs.record]}
        try:
            async with Scheduler(runtime_pool, schema=schema, **settings) as replica:
                job_id = await replica.schedule(jobs.record, args=("roles-upgrade",))
                await wait_until(partial(has_status, replica, job_id, JobStatus.SUCCEEDED))
        finally:
            await runtime_pool.close()
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        await pool.execute(f"DROP OWNED BY {quote_identifier(runtime)}")
        await pool.execute(f"DROP ROLE {quote_identifier(runtime)}")


async def test_applying_the_function_files_again_gives_back_no_revoked_right(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    """A right an administrator took from a runtime role stays taken when a later release
    applies the function files again (only a function's first creation grants)."""
    q = quote_identifier(schema)
    signature = (
        f"{q}.end_attempts(text[], uuid[], integer[], text[], text[], text[], text[], text[],"
        " double precision[], integer, timestamp with time zone[])"
    )
    await pool.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM {roles.runtime}")
    await pool.execute(f"REVOKE DELETE ON {q}.jobs FROM {roles.runtime}")
    await pool.execute(f"UPDATE {q}.schema_functions SET revision = 1, checksum = 'older'")
    async with pool.acquire() as conn:
        assert await migrations.migrate(conn, schema) == []
    assert await pool.fetchval(f"SELECT revision FROM {q}.schema_functions") > 1
    assert not await pool.fetchval(
        "SELECT has_function_privilege($1, $2, 'EXECUTE')", roles.runtime, signature
    )
    assert not await pool.fetchval(
        "SELECT has_table_privilege($1, $2, 'DELETE')", roles.runtime, f"{q}.jobs"
    )


async def test_a_producer_cannot_lift_its_own_payload_cap(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    """Issue 19, item 4: the cap is the owner's `settings` row, not a session setting."""
    q = quote_identifier(schema)
    big = "x" * 100_000  # over the default cap of 65536 bytes
    producer = await connect_as(roles.producer)
    try:
        await producer.execute("SET scheduler.max_payload_bytes = 100000000")
        with pytest.raises(asyncpg.ProgramLimitExceededError, match="over the cap of 65536"):
            await producer.fetchval(
                f"SELECT {q}.schedule_job($1, jsonb_build_array($2::text))", RECORD, big
            )
        for lift in (
            f"UPDATE {q}.settings SET max_payload_bytes = 100000000",
            f"INSERT INTO {q}.settings (max_payload_bytes) VALUES (100000000)",
            f"DELETE FROM {q}.settings",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await producer.execute(lift)
        with pytest.raises(asyncpg.ProgramLimitExceededError):
            await producer.fetchval(
                f"SELECT {q}.schedule_job($1, jsonb_build_array($2::text))", RECORD, big
            )
    finally:
        await producer.close()
    for role in (roles.runtime, roles.operator):
        conn = await connect_as(role)
        try:
            assert await conn.fetchval(f"SELECT max_payload_bytes FROM {q}.settings") == 65536
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"UPDATE {q}.settings SET max_payload_bytes = 100000000")
        finally:
            await conn.close()
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.jobs") == 0
    # The owner raises it, within its bound; then the producer's payload fits.
    owner = await connect_as(roles.owner)
    try:
        await owner.execute(f"UPDATE {q}.settings SET max_payload_bytes = 200000")
    finally:
        await owner.close()
    producer = await connect_as(roles.producer)
    try:
        assert await producer.fetchval(
            f"SELECT {q}.schedule_job($1, jsonb_build_array($2::text))", RECORD, big
        )
    finally:
        await producer.close()


async def test_an_operator_manages_schedules_queues_and_limits_but_not_jobs(
    pool: asyncpg.Pool, schema: str, roles: Roles
) -> None:
    q = quote_identifier(schema)
    operator = await connect_as(roles.operator)
    try:
        assert (
            await operator.fetchval(
                f"SELECT {q}.add_schedule('nightly', $1, every => '1 day')", RECORD
            )
            == "nightly"
        )
        assert await operator.fetchval(f"SELECT {q}.pause_schedule('nightly')") is True
        await operator.execute(f"SELECT {q}.pause_queue('slow')")
        await operator.execute(f"SELECT {q}.set_queue_limits('slow', concurrency_limit => 2)")
        await operator.execute(f"SELECT {q}.set_task_limits($1, rate_limit => 3)", RECORD)
        stats = await operator.fetch(f"SELECT queue, paused, problem FROM {q}.queue_stats")
        assert [tuple(r) for r in stats] == [("slow", True, None)]
        for forbidden in (
            f"SELECT {q}.schedule_job('{RECORD}')",
            f"SELECT * FROM {q}.jobs",
            f"UPDATE {q}.schedules SET paused = false",
            f"SELECT {q}.register_worker(ARRAY['{RECORD}'])",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await operator.execute(forbidden)
    finally:
        await operator.close()
