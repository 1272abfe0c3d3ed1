"""No dashboard page scans the jobs table: each list and the overview read through partial
indexes, with custom and with generic plans (asyncpg prepares statements, and PostgreSQL
switches a prepared statement to a generic plan after a few runs)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from scheduler.dashboard.data import THROUGHPUT_WINDOW, DashboardData
from scheduler.postgres.sql import quote_identifier
from tests.integration.test_query_plans import nodes

#: The partial indexes of pending rows: either serves the pending list (with a task and a
#: queue, the per-task claim index of the scale migration reads only that task's rows, in
#: the same order).
PENDING_INDEXES = {"jobs_claim_idx", "jobs_task_claim_idx"}
#: The index each status's list must read.
LIST_INDEXES = {
    "pending": PENDING_INDEXES,
    "running": {"jobs_running_idx"},
    "succeeded": {"jobs_finished_idx"},
    "failed": {"jobs_needing_attention_idx"},
    "cancelled": {"jobs_needing_attention_idx"},
    "blocked": {"jobs_needing_attention_idx"},
}
FIRST_CURSORS: dict[str, list[Any]] = {
    "pending": ["", 0, "-infinity", ""],
    "running": ["-infinity", ""],
}


async def explain(
    pool: asyncpg.Pool, sql: str, *args: object, generic: bool, analyze: bool = False
) -> Any:
    import json

    async with pool.acquire() as conn, conn.transaction():
        # Small tables make a sequential scan (or a bitmap scan and a sort) cheapest; forbid
        # them so the plan shows whether an index *can* serve the query and its order.
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        await conn.execute("SET LOCAL enable_sort = off")
        mode = "force_generic_plan" if generic else "force_custom_plan"
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        rows = await conn.fetch(f"EXPLAIN ({options}) {sql}", *args)
        return json.loads(rows[0][0])


def jobs_scans(plan: Any) -> list[dict[str, Any]]:
    return [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]


@pytest.fixture
async def busy(pool: asyncpg.Pool, migrated: str) -> DashboardData:
    """A table of mostly succeeded jobs with some of every other status."""
    table = f"{quote_identifier(migrated)}.jobs"
    worker = uuid.uuid4()
    await pool.execute(
        f"INSERT INTO {table} (task_name, queue, status, lease_owner, started_at, finished_at,"
        "                      execution_time)"
        " SELECT 't' || (n % 5), 'q' || (n % 3), s.status,"
        "        CASE WHEN s.status = 'running' THEN $1::uuid END,"
        "        CASE WHEN s.status <> 'pending' THEN now() END,"
        "        CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')"
        "             THEN now() - n * interval '1 second' END,"
        "        now() + (n % 100 - 50) * interval '1 second'"
        " FROM generate_series(1, 6000) AS n,"
        "      LATERAL (SELECT CASE WHEN n % 100 < 80 THEN 'succeeded'"
        "                           WHEN n % 100 < 90 THEN 'pending'"
        "                           WHEN n % 100 < 93 THEN 'failed'"
        "                           WHEN n % 100 < 95 THEN 'cancelled'"
        "                           WHEN n % 100 < 97 THEN 'blocked'"
        "                           ELSE 'running' END AS status) AS s",
        worker,
    )
    await pool.execute(f"ANALYZE {table}")
    return DashboardData(pool, migrated, cache_seconds=1)


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("status", list(LIST_INDEXES))
async def test_each_job_list_reads_its_index(
    pool: asyncpg.Pool, busy: DashboardData, status: str, generic: bool
) -> None:
    cursor = FIRST_CURSORS.get(status, ["infinity", ""])
    sql = getattr(busy.q, f"jobs_{status}")
    for task, queue in ((None, None), ("t1", "q2")):
        plan = await explain(pool, sql, task, queue, *cursor, 51, generic=generic)
        scans = jobs_scans(plan)
        assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), plan
        assert len(scans) == 1 and scans[0].get("Index Name") in LIST_INDEXES[status], plan
        if status != "running":  # the running rows are at most the fleet's slots
            # The index gives the order (an incremental sort only orders ties of its
            # prefix): a page reads its own rows, not every row of its status.
            assert "Sort" not in {n["Node Type"] for n in nodes(plan)}, plan


async def test_the_failed_list_reads_no_succeeded_rows(
    pool: asyncpg.Pool, busy: DashboardData
) -> None:
    """Most rows are succeeded; the failed list's index holds none of them."""
    plan = await explain(
        pool, busy.q.jobs_failed, None, None, "infinity", "", 51, generic=False, analyze=True
    )
    (scan,) = jobs_scans(plan)
    assert scan["Index Name"] == "jobs_needing_attention_idx"
    assert scan.get("Rows Removed by Filter", 0) == 0
    assert scan["Actual Rows"] == 51


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_the_overview_reads_only_partial_indexes(
    pool: asyncpg.Pool, busy: DashboardData, generic: bool
) -> None:
    plan = await explain(pool, busy.q.overview_counts, THROUGHPUT_WINDOW, generic=generic)
    scans = jobs_scans(plan)
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), plan
    used = {n.get("Index Name") for n in scans}
    assert len(used & PENDING_INDEXES) == 1, plan
    assert used - PENDING_INDEXES == {
        "jobs_running_idx",
        "jobs_finished_idx",
        "jobs_needing_attention_idx",
    }, plan
    finished = next(n for n in scans if n.get("Index Name") == "jobs_finished_idx")
    assert "finished_at >" in finished["Index Cond"]  # only the window's rows


@pytest.mark.parametrize("query", ["workers_page", "schedules_page"])
async def test_workers_and_schedules_pages_reach_jobs_through_indexes(
    pool: asyncpg.Pool, busy: DashboardData, query: str
) -> None:
    args: tuple[object, ...] = (500,) if query == "workers_page" else ("", 51)
    plan = await explain(pool, getattr(busy.q, query), *args, generic=True)
    scans = jobs_scans(plan)
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), plan
