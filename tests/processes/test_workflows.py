"""Job outcomes and workflows across real processes (issue 12): a producer-only process
waits for a result; a 3-level dependency tree of 50 jobs runs on 3 replicas, one of them
SIGKILLed mid-tree, with every job starting after its dependencies succeeded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import asyncpg
import pytest

from scheduler import JobRequest, JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import ROOT, replicas

pytestmark = pytest.mark.processes


async def test_a_producer_only_process_waits_for_a_result_computed_by_a_replica(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await pool.execute(side_jobs.side_table_sql(migrated))
    with replicas(TEST_DSN, migrated, 1):
        waited = subprocess.run(
            [sys.executable, "-m", "tests.support.producer", TEST_DSN, migrated, "forty-two"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert waited.returncode == 0, waited.stderr
    job = json.loads(waited.stdout)
    assert (job["status"], job["result"]) == ("succeeded", "forty-two")
    q = quote_identifier(migrated)
    finished = await pool.fetchval(
        f"SELECT count(*) FROM {q}.executions WHERE job_id = $1 AND finished_at IS NOT NULL",
        job["job_id"],
    )
    assert finished == 1  # it returned once the job had really run


def tree(seconds: float) -> tuple[list[JobRequest], dict[str, list[str]]]:
    """1 root -> 7 middle jobs -> 42 leaves, each leaf depending on two middle jobs (fan-out
    and fan-in): 50 jobs, 3 levels. Returns the requests and each job's dependencies."""
    requests = [JobRequest(side_jobs.work, args=(seconds,), job_id="root")]
    needs: dict[str, list[str]] = {"root": []}
    middle = [f"mid-{m}" for m in range(7)]
    for job_id in middle:
        requests.append(
            JobRequest(side_jobs.work, args=(seconds,), job_id=job_id, depends_on=["root"])
        )
        needs[job_id] = ["root"]
    for leaf in range(42):
        parents = [middle[leaf % 7], middle[(leaf + 1) % 7]]
        job_id = f"leaf-{leaf}"
        requests.append(
            JobRequest(side_jobs.work, args=(seconds,), job_id=job_id, depends_on=parents)
        )
        needs[job_id] = parents
    return requests, needs


async def test_a_dependency_tree_runs_in_order_across_replicas_despite_a_sigkill(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    producer = Scheduler(pool, schema=migrated)
    requests, needs = tree(seconds=0.5)
    with replicas(TEST_DSN, migrated, 3, "--concurrency", "4") as (victim, *_):
        await producer.schedule_many(requests)

        async def victim_runs_a_dependant() -> bool:
            # Its code has started (it wrote its row), not only been claimed: a claim
            # commits a moment before the job starts, longer on a busy machine.
            running = await pool.fetchval(
                f"SELECT count(*) FROM {q}.executions"
                " WHERE pid = $1 AND finished_at IS NULL AND job_id <> 'root'",
                victim.pid,
            )
            return bool(running)

        await wait_until(victim_runs_a_dependant, timeout=60, message="the victim mid-tree")
        victim.signal(signal.SIGKILL)

        async def all_finished() -> bool:
            unfinished = await pool.fetchval(
                f"SELECT count(*) FROM {q}.jobs"
                " WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
            )
            return bool(unfinished == 0)

        await wait_until(all_finished, timeout=120, message="the whole tree to finish")

    statuses = {r["job_id"]: r["status"] for r in await pool.fetch(f"SELECT * FROM {q}.jobs")}
    assert statuses == {job_id: JobStatus.SUCCEEDED.value for job_id in needs}  # none lost
    runs = await pool.fetch(
        f"SELECT job_id, attempt, pid, started_at, finished_at FROM {q}.executions"
    )
    # The run whose success was recorded: the last attempt that finished its work.
    succeeded = {
        r["job_id"]: r
        for r in sorted(runs, key=lambda r: r["attempt"])
        if r["finished_at"] is not None
    }
    for job_id, dependencies in needs.items():
        for dependency in dependencies:
            # None early: every run of a job (killed ones too) started after the run of
            # each of its dependencies that succeeded had ended.
            for run in (r for r in runs if r["job_id"] == job_id):
                assert run["started_at"] >= succeeded[dependency]["finished_at"], (
                    job_id,
                    dependency,
                )
    cut_short = [r for r in runs if r["pid"] == victim.pid and r["finished_at"] is None]
    assert cut_short, "the victim was killed mid-job"
    assert any(r["job_id"] != "root" for r in cut_short)
