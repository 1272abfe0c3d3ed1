"""The claim path must stay an index range scan per queue and priority, whatever the table
holds: these fail when a change to a query or an index makes PostgreSQL scan the table, or
read another queue's backlog."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PRIORITIES_DESCENDING, PostgresJobStore

TASK = "tests.support.jobs:record"


async def plan_of(pool: asyncpg.Pool, sql: str, *args: object, analyze: bool = False) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        # Small test tables would make a sequential scan the cheapest plan; forbid it so
        # the planner shows whether the index *can* serve the query.
        await conn.execute("SET LOCAL enable_seqscan = off")
        options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
        rows = await conn.fetch(f"EXPLAIN ({options}) {sql}", *args)
        plan = json.loads(rows[0][0])
        if analyze:  # EXPLAIN ANALYZE runs the claim: undo it
            await conn.execute("ROLLBACK AND CHAIN")
    return plan


def nodes(plan: Any) -> list[dict[str, Any]]:
    """Every plan node, depth first."""
    found: list[dict[str, Any]] = []
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found


async def fill(pool: asyncpg.Pool, schema: str, queue: str, count: int, *, due: bool) -> None:
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs (task_name, queue, execution_time)"
        " SELECT $1, $2, now() + n * interval '1 second' * $3"
        " FROM generate_series(1, $4) AS n",
        TASK,
        queue,
        -1 if due else 1,
        count,
    )


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
    claim = json.dumps(
        await plan_of(
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
            ["default"],
        )
    )
    assert '"Index Name": "jobs_claim_idx"' in claim
    assert '"Node Type": "Seq Scan"' not in claim
    due = json.dumps(
        await plan_of(pool, store.q.next_due_delay, [TASK], PRIORITIES_DESCENDING, ["default"])
    )
    assert '"Index Name": "jobs_claim_idx"' in due


async def test_an_idle_queue_beside_a_large_backlog_reads_almost_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """A replica working only the queue "quiet" (nothing due) must not pay for the 20 000
    due jobs of "busy": both claim paths read a handful of index pages, not the backlog."""
    await fill(pool, migrated, "busy", 20_000, due=True)
    await fill(pool, migrated, "quiet", 50, due=False)
    await pool.execute(f"ANALYZE {quote_identifier(migrated)}.jobs")
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    await store.register_worker(owner, "host", 1, [TASK], 30, ["quiet"])
    done: list[list[Any]] = [[], [], [], []]

    plain = await plan_of(
        pool,
        store.q.claim_jobs,
        owner,
        [TASK],
        PRIORITIES_DESCENDING,
        10,
        0.01,
        *done,
        ["quiet"],
        analyze=True,
    )
    scans = [n for n in nodes(plain) if n.get("Relation Name") == "jobs"]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans)
    claim_scans = [n for n in scans if n.get("Index Name") == "jobs_claim_idx"]
    loops = sum(n["Actual Loops"] for n in claim_scans)
    assert loops == len(PRIORITIES_DESCENDING)  # one range scan per priority of "quiet"
    assert all(n["Actual Rows"] == 0 for n in claim_scans)
    # Each scan touched a few pages, not the backlog's hundreds.
    backlog_pages = await pool.fetchval(
        "SELECT relpages FROM pg_class WHERE oid = $1::regclass",
        f"{quote_identifier(migrated)}.jobs_claim_idx",
    )
    touched = sum(n["Shared Hit Blocks"] + n["Shared Read Blocks"] for n in claim_scans)
    assert touched <= 4 * loops < backlog_pages

    # The flow path's claim statement runs inside a function; EXPLAIN its candidate scan
    # through auto_explain would be heavier than this: check it reads the quiet queue only
    # by running it against the backlog and asserting it claimed nothing from "busy".
    rows = await pool.fetch(store.q.claim_flow_jobs, owner, [TASK], ["quiet"], 10, 0.0, *done)
    assert [row["kind"] for row in rows] == ["flow"]
    busy_pending = await pool.fetchval(
        f"SELECT count(*) FROM {quote_identifier(migrated)}.jobs"
        " WHERE queue = 'busy' AND status = 'pending'"
    )
    assert busy_pending == 20_000


async def test_the_flow_claims_candidate_scan_uses_the_claim_index(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """The statement inside claim_flow_jobs(), planned through auto_explain's nested
    statements: one index range scan per queue and priority, never a table scan."""
    await fill(pool, migrated, "busy", 5_000, due=True)
    await fill(pool, migrated, "limited", 2_000, due=True)
    await pool.execute(f"ANALYZE {quote_identifier(migrated)}.jobs")
    await pool.execute(
        f"SELECT {quote_identifier(migrated)}.set_queue_limits('limited', concurrency_limit => 2)"
    )
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    await store.register_worker(owner, "host", 1, [TASK], 30, ["limited"])
    plans: list[str] = []

    def collect(_conn: object, message: Any) -> None:
        plans.append(message.message)

    async with pool.acquire() as conn:
        conn.add_log_listener(collect)
        try:
            async with conn.transaction():
                await conn.execute("LOAD 'auto_explain'")
                for setting, value in (
                    ("auto_explain.log_min_duration", "0"),
                    ("auto_explain.log_nested_statements", "on"),
                    ("auto_explain.log_format", "json"),
                    ("auto_explain.log_level", "notice"),
                    ("enable_seqscan", "off"),
                ):
                    await conn.execute(f"SET LOCAL {setting} = '{value}'")
                rows = await conn.fetch(
                    store.q.claim_flow_jobs, owner, [TASK], ["limited"], 10, 0.0, [], [], [], []
                )
        finally:
            conn.remove_log_listener(collect)
    assert len([row for row in rows if row["kind"] == "claimed"]) == 2  # the limit, not 10
    claim_plan = next(p for p in plans if "jobs_claim_idx" in p and "LockRows" in p)
    assert '"Node Type": "Seq Scan"' not in claim_plan
