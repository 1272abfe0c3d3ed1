"""The claim path must stay an index range scan per queue and priority, whatever the table
holds: these fail when a change to a query or an index makes PostgreSQL scan the table, or
read another queue's backlog."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

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
    statements: one index range scan per queue, task and priority, never a table scan."""
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
    claim_plan = next(p for p in plans if "candidates" in p and "LockRows" in p)
    assert "jobs_task_claim_idx" in claim_plan
    plan = json.loads(claim_plan[claim_plan.index("{") :])
    # The one-row lock_key_walk table is read whole; the jobs table never is.
    assert not [
        n
        for n in nodes([plan])
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "jobs"
    ]


OTHER = "tests.support.jobs:other"
BACKLOG = 50_000


async def backlog(pool: asyncpg.Pool, schema: str, *, task: str, queue: str, keyed: bool) -> None:
    """BACKLOG due jobs, older than anything else in the table: a claim reading in due
    order meets all of them first."""
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs (task_name, queue, lock_key, execution_time)"
        " SELECT $1, $2, CASE WHEN $3 THEN 'key-' || n END,"
        "        now() - interval '1 day' - n * interval '1 millisecond'"
        " FROM generate_series(1, $4) AS n",
        task,
        queue,
        keyed,
        BACKLOG,
    )


async def flow_claim_plans(
    pool: asyncpg.Pool,
    store: PostgresJobStore,
    owner: uuid.UUID,
    tasks: list[str],
    queues: list[str],
) -> tuple[list[Any], int]:
    """The plans of the statements claim_flow_jobs() runs (auto_explain, nested, JSON), and
    how many jobs it claimed; rolled back."""
    messages: list[str] = []

    def collect(_conn: object, message: Any) -> None:
        messages.append(message.message)

    async with pool.acquire() as conn:
        conn.add_log_listener(collect)
        try:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute("LOAD 'auto_explain'")
                for setting, value in (
                    ("auto_explain.log_min_duration", "0"),
                    ("auto_explain.log_nested_statements", "on"),
                    ("auto_explain.log_analyze", "on"),
                    ("auto_explain.log_timing", "off"),
                    ("auto_explain.log_format", "json"),
                    ("auto_explain.log_level", "notice"),
                ):
                    await conn.execute(f"SET LOCAL {setting} = '{value}'")
                rows = await conn.fetch(
                    store.q.claim_flow_jobs, owner, tasks, queues, 10, 0.0, [], [], [], []
                )
            finally:
                await transaction.rollback()
        finally:
            conn.remove_log_listener(collect)
    plans = [json.loads(m[m.index("{") :]) for m in messages if "{" in m]
    return plans, len([row for row in rows if row["kind"] == "claimed"])


def rows_read_from_jobs(plan: Any) -> int:
    """Rows the plan's scans of `jobs` returned or filtered out, over all their loops."""
    return sum(
        round((n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"])
        for n in nodes([{"Plan": plan}])
        if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]
    )


async def _queue_limit(pool: asyncpg.Pool, q: str) -> None:
    await pool.execute(f"SELECT {q}.set_queue_limits('default', concurrency_limit => 1000)")


async def _full_task_limit(pool: asyncpg.Pool, q: str) -> None:
    await pool.execute(f"SELECT {q}.set_task_limits($1, concurrency_limit => 1)", OTHER)
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'running', lease_owner = gen_random_uuid()"
        f" WHERE job_id = (SELECT job_id FROM {q}.jobs WHERE task_name = $1 LIMIT 1)",
        OTHER,
    )


async def _empty_rate_bucket(pool: asyncpg.Pool, q: str) -> None:
    await pool.execute(
        f"SELECT {q}.set_task_limits($1, rate_limit => 1, rate_period => 3600)", OTHER
    )
    await pool.execute(
        f"UPDATE {q}.limits SET state = jsonb_build_object('tokens', 0, 'refilled_at',"
        " extract(epoch FROM now())) WHERE (scope, name, kind) = ('task', $1, 'rate')",
        OTHER,
    )


async def _paused(pool: asyncpg.Pool, q: str) -> None:
    await pool.execute(f"SELECT {q}.pause_queue('held')")


async def _nothing(pool: asyncpg.Pool, q: str) -> None:
    return None


#: (name, the backlog's task, queue, lock keys, the setting)
BACKLOGS = {
    "queue concurrency limit (not binding)": (TASK, "default", False, _queue_limit),
    "a task whose concurrency limit is full": (OTHER, "default", False, _full_task_limit),
    "a task whose rate bucket is empty": (OTHER, "default", False, _empty_rate_bucket),
    "a distinct lock key on every job": (TASK, "default", True, _nothing),
    "a paused queue": (TASK, "held", False, _paused),
    "a task this worker does not run": (OTHER, "default", False, _queue_limit),
}


@pytest.mark.parametrize("case", sorted(BACKLOGS))
async def test_the_flow_claim_reads_a_bounded_number_of_rows_beside_a_backlog(
    pool: asyncpg.Pool, migrated: str, case: str
) -> None:
    """Beside 50,000 due jobs it cannot take or need not read past (a full limit, an empty
    bucket, a paused queue, another task), or can take (a limit that does not bind, lock
    keys), the claim under flow control reads index ranges of at most a few rows per
    (queue, task, priority): O(claim), not O(backlog). Structure, not timing."""
    task, queue, keyed, setting = BACKLOGS[case]
    q = quote_identifier(migrated)
    await backlog(pool, migrated, task=task, queue=queue, keyed=keyed)
    await fill(pool, migrated, "default", 20, due=True)  # claimable, behind the backlog
    await setting(pool, q)
    await pool.execute(f"ANALYZE {q}.jobs")
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    tasks = [TASK] if case == "a task this worker does not run" else [TASK, OTHER]
    await store.register_worker(owner, "host", 1, tasks, 30, ["default", "held"])
    plans, claimed = await flow_claim_plans(pool, store, owner, tasks, ["default", "held"])
    assert claimed == 10
    claim = next(p["Plan"] for p in plans if "candidates" in p["Query Text"])
    scans = [n for n in nodes([{"Plan": claim}]) if n.get("Relation Name") == "jobs"]
    # No scan of the table that ran (a never-executed branch may keep one: EXISTS over many
    # matching rows, which a table scan answers at its first row).
    assert scans and all(n["Node Type"] != "Seq Scan" or not n["Actual Loops"] for n in scans)
    # 2 queues x 2 tasks x 4 priorities ranges of at most 10 rows, and the rows claimed.
    assert rows_read_from_jobs(claim) <= 2 * 2 * 4 * 10 + 10 * 4 < BACKLOG


@pytest.mark.parametrize("case", ["none", "a paused queue"])
async def test_the_plain_claim_reads_a_bounded_number_of_rows_beside_a_backlog(
    pool: asyncpg.Pool, migrated: str, case: str
) -> None:
    """The unserialised claim beside 50,000 due jobs (its own, or in a paused queue it
    works) reads a few rows per (queue, priority), not the backlog."""
    q = quote_identifier(migrated)
    await backlog(
        pool, migrated, task=TASK, queue="held" if case != "none" else "default", keyed=False
    )
    await fill(pool, migrated, "default", 20, due=True)
    if case != "none":
        await _paused(pool, q)
    await pool.execute(f"ANALYZE {q}.jobs")
    store = PostgresJobStore(pool, migrated)
    owner = uuid.uuid4()
    await store.register_worker(owner, "host", 1, [TASK], 30, ["default", "held"])
    done: list[list[Any]] = [[], [], [], []]
    plan = await plan_of(
        pool,
        store.q.claim_jobs,
        owner,
        [TASK],
        PRIORITIES_DESCENDING,
        10,
        0.0,
        *done,
        ["default", "held"],
        analyze=True,
    )
    claimed = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
    assert claimed and all(n["Node Type"] != "Seq Scan" for n in claimed)
    assert rows_read_from_jobs(plan[0]["Plan"]) <= 2 * 4 * 10 + 10 * 4 < BACKLOG


async def test_each_prune_batch_reads_its_rows_through_indexes(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """A batch of the pruner (and of `scheduler purge`) finds its rows through the
    finished-jobs index and deletes them through the primary key: with the planner's own
    settings, no batch scans the table (at 10M finished rows, every batch would read them
    all). Planned as the statements run: statistics gathered, sequential scans allowed."""
    q = quote_identifier(migrated)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, status, attempts, finished_at)"
        " SELECT $1, 'succeeded', 1, now() - interval '8 days' - n * interval '1 second'"
        " FROM generate_series(1, 20000) AS n",
        TASK,
    )
    await fill(pool, migrated, "default", 5_000, due=True)
    await pool.execute(f"ANALYZE {q}.jobs")
    store = PostgresJobStore(pool, migrated)
    for sql, args in (
        (store.q.prune_finished_jobs, (7 * 86400.0, 1000)),
        (store.q.purge_jobs_finished_before, (None, ["succeeded"], 1000, 7 * 86400.0)),
    ):
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
            await conn.execute("ROLLBACK AND CHAIN")
        plan = json.loads(rows[0][0])
        scans = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
        assert all(n["Node Type"] != "Seq Scan" for n in scans), sql
        indexes = {n.get("Index Name") for n in nodes(plan)}
        assert {"jobs_finished_idx", "jobs_pkey"} <= indexes, sql
        assert rows_read_from_jobs(plan[0]["Plan"]) <= 2 * 1000 + 10, sql


async def test_failing_unrunnable_jobs_reads_only_unserved_tasks_rows(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """Housekeeping beside a backlog of 50,000 old due jobs whose task a live worker runs:
    it fails the 20 old jobs of a task nobody runs and reads a few index entries per
    (queue, task) pair, not the backlog (it read every old row, and every worker for each)."""
    q = quote_identifier(migrated)
    await backlog(pool, migrated, task=TASK, queue="default", keyed=False)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, execution_time)"
        " SELECT $1, now() - interval '2 hours' FROM generate_series(1, 20)",
        OTHER,
    )
    await pool.execute(f"ANALYZE {q}.jobs")
    store = PostgresJobStore(pool, migrated)
    await store.register_worker(uuid.uuid4(), "host", 1, [TASK], 30, ["default"])
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {store.q.fail_unrunnable_jobs}", 3600.0, 1000
        )
        await conn.execute("ROLLBACK AND CHAIN")
    plan = json.loads(rows[0][0])
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
    assert all(n["Node Type"] != "Seq Scan" for n in scans)
    assert rows_read_from_jobs(plan[0]["Plan"]) <= 200 < BACKLOG
    assert await store.fail_unrunnable_jobs(3600.0, 1000) == 20
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.jobs WHERE status = 'failed'") == 20


async def test_ending_attempts_looks_each_one_up_by_key_whatever_the_plan_cache_holds(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """end_attempts() under a cached generic plan, with statistics taken while nothing ran
    (as after a quiet night): each attempt's row comes by primary key, not from a scan of
    every running row per attempt (that plan cost 93 ms for 59 successes beside 6,000
    running jobs, against 3 ms)."""
    q = quote_identifier(migrated)
    await pool.execute(
        f"INSERT INTO {q}.jobs (job_id, task_name) SELECT 'j' || g, $1"
        " FROM generate_series(1, 3000) AS g",
        TASK,
    )
    await pool.execute(f"ANALYZE {q}.jobs")
    owner = uuid.uuid4()
    await pool.execute(
        f"INSERT INTO {q}.workers (worker_id, hostname, pid, tasks, lease_expires_at)"
        " VALUES ($1, 'h', 1, ARRAY[$2], now() + interval '1 hour')",
        owner,
        TASK,
    )
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'running', lease_owner = $1, attempts = 1"
        " WHERE job_id IN (SELECT 'j' || g FROM generate_series(1, 1000) AS g)",
        owner,
    )
    plans: list[str] = []

    def collect(_conn: object, message: Any) -> None:
        plans.append(str(message.message))

    async with pool.acquire() as conn:
        # auto_explain shows the plans of the statements inside the function, as NOTICEs.
        conn.add_log_listener(collect)
        try:
            await conn.execute("LOAD 'auto_explain'")
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute("SET auto_explain.log_min_duration = 0")
            await conn.execute("SET auto_explain.log_nested_statements = on")
            await conn.execute("SET auto_explain.log_level = notice")
            ids = [f"j{n}" for n in range(1, 60)]
            ended = await conn.fetch(
                f"SELECT * FROM {q}.end_attempts($1, $2, $3, $4)",
                ids,
                [owner] * len(ids),
                [1] * len(ids),
                ["succeeded"] * len(ids),
            )
        finally:
            conn.remove_log_listener(collect)
            await conn.execute("RESET ALL")
    assert len(ended) == 59
    [plan] = [text for text in plans if "CTE held" in text]
    held = plan[plan.index("CTE held") : plan.index("CTE ended")]
    assert "Index Scan using jobs_pkey" in held, plan
    assert "jobs_running_idx" not in held and "Join Filter" not in held, plan
