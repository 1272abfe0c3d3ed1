"""The SQL producer API takes the flow-control columns (migration 0010_sql_flow_columns):
schedule_job(), job_request() and schedule_jobs() accept `queue`, `lock_key` and
`unique_key`, check them as Python does, and meet a held unique key with the call's
`conflict` exactly as Scheduler.schedule() does; calls written for 0005 keep working."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from scheduler import Scheduler
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.integration.test_roles import connect_as
from tests.support.db import TEST_DSN, count_jobs
from tests.support.schema_catalog import install_head

RECORD = "tests.support.jobs:record"


async def job_row(pool: asyncpg.Pool, schema: str, job_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        f"SELECT * FROM {quote_identifier(schema)}.jobs WHERE job_id = $1", job_id
    )
    assert row is not None
    return row


async def claim_as_sql_worker(
    pool: asyncpg.Pool, schema: str, queues: list[str] | None = None
) -> list[str]:
    """Claim up to 100 due jobs in `queues` (default: 'default') through the SQL protocol."""
    q = quote_identifier(schema)
    worker = await pool.fetchval(f"SELECT {q}.register_worker(ARRAY[$1])", RECORD)
    rows = await pool.fetch(
        f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 100, queue_names => $2)",
        worker,
        queues or ["default"],
    )
    return [row["job_id"] for row in rows]


async def test_schedule_job_stores_queue_lock_key_and_unique_key(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(
        f"SELECT {q}.schedule_job($1, job_id => 'flow', queue => 'bulk.mail:eu-1',"
        " lock_key => 'customer-42', unique_key => 'welcome-42')",
        RECORD,
    )
    await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'plain')", RECORD)
    await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{q}.job_request($1, job_id => 'batched',"
        " queue => 'bulk.mail:eu-1', lock_key => 'customer-7', unique_key => 'u-7')])",
        RECORD,
    )
    job = await Scheduler(pool, schema=migrated).get_job("flow")
    assert job is not None
    assert (job.lock_key, job.unique_key) == ("customer-42", "welcome-42")
    rows = {
        job_id: (row["queue"], row["lock_key"], row["unique_key"])
        for job_id in ("flow", "plain", "batched")
        for row in [await job_row(pool, migrated, job_id)]
    }
    assert rows == {
        "flow": ("bulk.mail:eu-1", "customer-42", "welcome-42"),
        "plain": ("default", None, None),
        "batched": ("bulk.mail:eu-1", "customer-7", "u-7"),
    }
    # The queue routes: a worker of 'default' does not see them, one of the queue does.
    assert await claim_as_sql_worker(pool, migrated) == ["plain"]
    assert sorted(await claim_as_sql_worker(pool, migrated, ["bulk.mail:eu-1"])) == [
        "batched",
        "flow",
    ]


async def test_calls_written_for_the_old_signatures_keep_working(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    # 0005's ten positional parameters, conflict last.
    positional = f"SELECT {q}.schedule_job($1, '[1]', '{{}}', NULL, NULL, 'old', 10, 2, NULL, $2)"
    assert await pool.fetchval(positional, RECORD, "raise") == "old"
    assert await pool.fetchval(positional, RECORD, "ignore") == "old"
    ids = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{q}.job_request($1, '[2]', '{{}}', NULL,"
        " '1 hour', 'old-batch', 5, 0, '30 seconds')])",
        RECORD,
    )
    assert ids == ["old-batch"]
    for job_id in ("old", "old-batch"):
        row = await job_row(pool, migrated, job_id)
        assert (row["queue"], row["lock_key"], row["unique_key"]) == ("default", None, None)
    # A request built by hand with NULL flow fields goes to the default queue.
    ids = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[ROW($1, '[]', '{{}}', NULL, NULL, 'by-hand', 5, 0,"
        f" NULL, NULL, NULL, NULL)::{q}.job_request])",
        RECORD,
    )
    assert ids == ["by-hand"]
    assert (await job_row(pool, migrated, "by-hand"))["queue"] == "default"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ("queue => ''", "queue must be a text of 1 to 255 letters"),
        ("queue => 'has space'", "queue must be a text of 1 to 255 letters"),
        ("queue => 'caf\u00e9'", "queue must be a text of 1 to 255 letters"),
        ("queue => repeat('q', 256)", "queue must be a text of 1 to 255 letters"),
        ("queue => NULL, lock_key => ''", "lock_key must be NULL or a text of 1 to 255"),
        ("lock_key => repeat('k', 256)", "lock_key must be NULL or a text of 1 to 255"),
        ("unique_key => ''", "unique_key must be NULL or a text of 1 to 255"),
        ("unique_key => repeat('u', 256)", "unique_key must be NULL or a text of 1 to 255"),
    ],
)
async def test_bad_flow_fields_raise_22023_and_write_nothing(
    pool: asyncpg.Pool, migrated: str, arguments: str, fragment: str
) -> None:
    q = quote_identifier(migrated)
    with pytest.raises(asyncpg.InvalidParameterValueError, match=fragment):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, {arguments})", RECORD)
    # In a batch the message names the element.
    with pytest.raises(asyncpg.InvalidParameterValueError, match=rf"^jobs\[2\]: {fragment}"):
        await pool.fetchval(
            f"SELECT {q}.schedule_jobs(ARRAY[{q}.job_request($1),"
            f" {q}.job_request($1, {arguments})])",
            RECORD,
        )
    # check_job_request, called directly, checks them too.
    with pytest.raises(asyncpg.InvalidParameterValueError, match=fragment):
        await pool.fetchval(
            f"SELECT {q}.check_job_request({q}.job_request($1, {arguments}))", RECORD
        )
    assert await count_jobs(pool, migrated) == 0


async def test_longest_keys_and_queue_names_are_accepted(pool: asyncpg.Pool, migrated: str) -> None:
    q = quote_identifier(migrated)
    job_id = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, queue => repeat('q', 255), lock_key => repeat('\u00e9', 255),"
        " unique_key => repeat('\u00fc', 255))",
        RECORD,
    )
    row = await job_row(pool, migrated, job_id)
    assert (len(row["queue"]), len(row["lock_key"]), len(row["unique_key"])) == (255, 255, 255)


async def test_a_held_unique_key_meets_each_conflict_policy_as_in_python(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    schedule = (
        f"SELECT {q}.schedule_job($1, $2::jsonb, job_id => $3, unique_key => 'k', conflict => $4)"
    )
    assert await pool.fetchval(schedule, RECORD, "[1]", "holder", "raise") == "holder"

    # RAISE: 23505 on the unique-key index, naming the holder; nothing written.
    with pytest.raises(asyncpg.UniqueViolationError, match="job 'holder' already holds") as raised:
        await pool.fetchval(schedule, RECORD, "[2]", "second", "raise")
    assert raised.value.constraint_name == "jobs_unique_key_idx"
    # Also when no id is given (a generated one).
    with pytest.raises(asyncpg.UniqueViolationError, match="already holds unique_key 'k'"):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, unique_key => 'k')", RECORD)
    # IGNORE: the holder's id, the holder unchanged.
    assert await pool.fetchval(schedule, RECORD, "[3]", "third", "ignore") == "holder"
    assert await pool.fetchval(schedule, RECORD, "[3]", None, "ignore") == "holder"
    assert await count_jobs(pool, migrated) == 1
    assert (await job_row(pool, migrated, "holder"))["args"] == "[1]"

    # REPLACE: the pending holder overwritten in place, keeping its id; budgets reset.
    await pool.execute(
        f"UPDATE {q}.jobs SET failures = 2, last_error = 'x' WHERE job_id = 'holder'"
    )
    replaced = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, '[4]', job_id => 'fourth', unique_key => 'k',"
        " queue => 'other', lock_key => 'L', priority => 20, conflict => 'replace')",
        RECORD,
    )
    assert replaced == "holder"
    row = await job_row(pool, migrated, "holder")
    assert (row["args"], row["queue"], row["lock_key"], row["priority"]) == (
        "[4]",
        "other",
        "L",
        20,
    )
    assert (row["status"], row["failures"], row["last_error"]) == ("pending", 0, None)
    assert await count_jobs(pool, migrated) == 1

    # REPLACE of a running holder: 55006, nothing changes.
    assert await claim_as_sql_worker(pool, migrated, ["other"]) == ["holder"]
    before = await job_row(pool, migrated, "holder")
    with pytest.raises(
        asyncpg.ObjectInUseError, match="job 'holder' holds unique_key 'k' and is running"
    ):
        await pool.fetchval(schedule, RECORD, "[5]", "fifth", "replace")
    assert await job_row(pool, migrated, "holder") == before

    # Once the holder finished, the key is free again; a REPLACE whose id belongs to
    # another job that does not hold the key is refused on the id.
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL,"
        " finished_at = now() WHERE job_id = 'holder'"
    )
    assert await pool.fetchval(schedule, RECORD, "[6]", "sixth", "raise") == "sixth"
    with pytest.raises(
        asyncpg.UniqueViolationError, match="already exists and does not hold"
    ) as raised:
        await pool.fetchval(
            f"SELECT {q}.schedule_job($1, job_id => 'holder', unique_key => 'k2',"
            " conflict => 'replace')",
            RECORD,
        )
    assert raised.value.constraint_name == "jobs_pkey"
    # An id conflict without a held key stays the id error of 0005.
    with pytest.raises(asyncpg.UniqueViolationError, match="a job with id 'sixth' already exists"):
        await pool.fetchval(
            f"SELECT {q}.schedule_job($1, job_id => 'sixth', unique_key => 'k3')", RECORD
        )
    assert await count_jobs(pool, migrated) == 2


async def test_a_batch_with_unique_keys_is_all_or_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    request = f"{q}.job_request"
    await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'held', unique_key => 'a')", RECORD)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="unique_key 'b' appears twice"):
        await pool.fetchval(
            f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, unique_key => 'b'),"
            f" {request}($1, unique_key => 'b')])",
            RECORD,
        )
    with pytest.raises(asyncpg.UniqueViolationError, match="job 'held' already holds"):
        await pool.fetchval(
            f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, job_id => 'n1', unique_key => 'c'),"
            f" {request}($1, job_id => 'n2', unique_key => 'a')])",
            RECORD,
        )
    assert await count_jobs(pool, migrated) == 1
    ids = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, job_id => 'n1', unique_key => 'c'),"
        f" {request}($1, job_id => 'n2', unique_key => 'a'), {request}($1, job_id => 'held'),"
        f" {request}($1, job_id => 'n3')], conflict => 'ignore')",
        RECORD,
    )
    assert ids == ["n1", "held", "held", "n3"]
    ids = await pool.fetchval(
        f"SELECT {q}.schedule_jobs(ARRAY[{request}($1, '[9]', job_id => 'n4', unique_key => 'c'),"
        f" {request}($1, '[9]', job_id => 'n3'), {request}($1, '[9]', unique_key => 'new')],"
        " conflict => 'replace')",
        RECORD,
    )
    assert ids[:2] == ["n1", "n3"] and ids[2] not in ("n1", "n3", "n4")
    for job_id in ids:
        assert (await job_row(pool, migrated, job_id))["args"] == "[9]"
    assert await count_jobs(pool, migrated) == 4  # held, n1, n3 and the new one


@pytest.mark.parametrize("policy", ["raise", "ignore", "replace"])
async def test_fifty_concurrent_schedules_of_one_unique_key(
    pool: asyncpg.Pool, migrated: str, policy: str
) -> None:
    q = quote_identifier(migrated)
    big_pool = await asyncpg.create_pool(TEST_DSN, min_size=50, max_size=50)
    assert big_pool is not None
    try:
        results = await asyncio.gather(
            *(
                big_pool.fetchval(
                    f"SELECT {q}.schedule_job($1, jsonb_build_array($2::int), delay => '1 min',"
                    " unique_key => 'hot', conflict => $3)",
                    RECORD,
                    i,
                    policy,
                )
                for i in range(50)
            ),
            return_exceptions=True,
        )
    finally:
        await big_pool.close()
    assert await count_jobs(pool, migrated) == 1
    [row] = await pool.fetch(f"SELECT * FROM {q}.jobs")
    ids = [r for r in results if isinstance(r, str)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if policy == "raise":
        assert ids == [row["job_id"]]
        assert len(errors) == 49
        assert all(isinstance(e, asyncpg.UniqueViolationError) for e in errors)
        assert {e.constraint_name for e in errors} == {"jobs_unique_key_idx"}  # type: ignore[attr-defined]
    else:
        assert not errors and ids == [row["job_id"]] * 50
    assert row["status"] == "pending" and row["unique_key"] == "hot"


async def test_fifty_concurrent_schedules_of_one_lock_key_all_wait_their_turn(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    big_pool = await asyncpg.create_pool(TEST_DSN, min_size=50, max_size=50)
    assert big_pool is not None
    try:
        ids = await asyncio.gather(
            *(
                big_pool.fetchval(f"SELECT {q}.schedule_job($1, lock_key => 'customer-42')", RECORD)
                for _ in range(50)
            )
        )
    finally:
        await big_pool.close()
    assert len(set(ids)) == 50 and await count_jobs(pool, migrated) == 50
    # Every one is stored with its key, so a claim takes one of them at a time.
    assert len(await claim_as_sql_worker(pool, migrated)) == 1


async def test_roles_granted_before_the_upgrade_keep_scheduling(
    pool: asyncpg.Pool, schema: str
) -> None:
    """An existing producer role needs no new grant: migrate gives the functions this
    migration dropped and functions/ recreated to every role that could call them."""
    q = quote_identifier(schema)
    producer = f"sched_prod_{uuid.uuid4().hex[:12]}"
    this = next(m for m in migrations.known_migrations() if m.name == "sql_flow_columns")
    await pool.execute(f"CREATE ROLE {quote_identifier(producer)} NOLOGIN")
    try:
        # The schema as the release before this migration built it (functions and all).
        async with pool.acquire() as conn:
            await install_head(conn, schema, up_to=this.version - 1)
            await conn.execute(f"SELECT {q}.grant_producer_role($1)", producer)
            assert this.version in await migrations.migrate(conn, schema)
        web = await connect_as(producer)
        try:
            job_id = await web.fetchval(
                f"SELECT {q}.schedule_job($1, queue => 'q1', unique_key => 'once')", RECORD
            )
            assert await web.fetchval(
                f"SELECT {q}.schedule_jobs(ARRAY[{q}.job_request($1, unique_key => 'once')],"
                " conflict => 'ignore')",
                RECORD,
            ) == [job_id]
            checked = await web.fetchval(
                f"SELECT ({q}.check_job_request({q}.job_request($1))).queue", RECORD
            )
            assert checked == "default"
            # Still no right on the tables.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await web.fetch(f"SELECT * FROM {q}.jobs")
        finally:
            await web.close()
        # Nobody else got anything.
        public = await pool.fetchval(
            "SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a"
            " WHERE p.pronamespace = $1::regnamespace AND a.grantee = 0"
            " AND p.proname IN ('schedule_job', 'job_request', 'check_job_request')",
            q,
        )
        assert public == 0
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        await pool.execute(f"DROP OWNED BY {quote_identifier(producer)}")
        await pool.execute(f"DROP ROLE {quote_identifier(producer)}")


async def test_a_blocked_holder_is_replaced_in_place_and_stays_blocked(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.fetchval(f"SELECT {q}.schedule_job($1, job_id => 'dep', delay => '1h')", RECORD)
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval(
            f"SELECT {q}.schedule_job($1, '[1]', job_id => 'waiter', unique_key => 'w')", RECORD
        )
        assert await conn.fetchval(f"SELECT {q}.add_dependencies('waiter', ARRAY['dep'])") == (
            "blocked"
        )
    with pytest.raises(asyncpg.UniqueViolationError, match="job 'waiter' already holds"):
        await pool.fetchval(f"SELECT {q}.schedule_job($1, unique_key => 'w')", RECORD)
    replaced = await pool.fetchval(
        f"SELECT {q}.schedule_job($1, '[2]', unique_key => 'w', conflict => 'replace')", RECORD
    )
    assert replaced == "waiter"
    row = await job_row(pool, migrated, "waiter")
    assert (row["status"], row["args"]) == ("blocked", "[2]")
