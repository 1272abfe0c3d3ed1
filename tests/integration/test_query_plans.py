"""The claim path must stay an index range scan per priority, whatever the table holds:
these fail when a change to a query or an index makes PostgreSQL scan the table."""

from __future__ import annotations

import json
import uuid

import asyncpg

from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PRIORITIES_DESCENDING, PostgresJobStore

TASK = "tests.support.jobs:record"


async def plan_of(pool: asyncpg.Pool, sql: str, *args: object) -> str:
    async with pool.acquire() as conn, conn.transaction():
        # Small test tables would make a sequential scan the cheapest plan; forbid it so
        # the planner shows whether the index *can* serve the query.
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return json.dumps(json.loads(rows[0][0]))


async def test_the_claim_and_next_due_queries_use_the_claim_index(
    pool: asyncpg.Pool, migrated: str
) -> None:
    table = f"{quote_identifier(migrated)}.jobs"
    await pool.execute(
        f"INSERT INTO {table} (task_name, execution_time, status, finished_at)"
        " SELECT $1, now() + n * interval '1 second',"
        "        CASE WHEN n % 2 = 0 THEN 'pending' ELSE 'succeeded' END,"
        "        CASE WHEN n % 2 = 0 THEN NULL ELSE now() END"
        " FROM generate_series(1, 5000) AS n",
        TASK,
    )
    await pool.execute(f"ANALYZE {table}")
    store = PostgresJobStore(pool, migrated)
    claim = await plan_of(
        pool,
        store.q.claim_jobs,
        uuid.uuid4(),
        [TASK],
        PRIORITIES_DESCENDING,
        10,
        0.01,
        [],
        [],
        [],
        [],
    )
    assert '"Index Name": "jobs_claim_idx"' in claim
    assert '"Node Type": "Seq Scan"' not in claim
    due = await plan_of(pool, store.q.next_due_delay, [TASK], PRIORITIES_DESCENDING)
    assert '"Index Name": "jobs_claim_idx"' in due
