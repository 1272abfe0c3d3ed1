"""Least privilege: an owner role migrates, a runtime role runs replicas with DML only, a
producer role may only call the scheduling and cancel functions and read the views.

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

RECORD = "tests.support.jobs:record"


@dataclass(frozen=True)
class Roles:
    owner: str
    runtime: str
    producer: str
    outsider: str  # USAGE on the schema and nothing else


@pytest.fixture
async def roles(pool: asyncpg.Pool, schema: str) -> AsyncIterator[Roles]:
    """Fresh NOLOGIN roles; a DBA-made schema owned by `owner`, migrated by it, with the
    runtime and producer grants applied by it."""
    suffix = uuid.uuid4().hex[:12]
    names = Roles(*(f"sched_{kind}_{suffix}" for kind in ("own", "run", "prod", "out")))
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
