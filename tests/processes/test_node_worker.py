"""A worker written in Node.js (tests/node_worker/worker.mjs, on the `pg` npm package)
shares a queue with Python replica processes through the SQL worker protocol."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from scheduler.postgres.sql import quote_identifier
from tests.support import side_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import ROOT, replicas

pytestmark = pytest.mark.processes

NODE_WORKER = ROOT / "tests" / "node_worker"


@pytest.fixture(scope="session")
def node_worker_script() -> Path:
    """worker.mjs with `pg` installed from the npm registry next to it (gitignored)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed; the foreign-worker test needs it")
    if not (NODE_WORKER / "node_modules" / "pg").is_dir():
        installed = subprocess.run(
            ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund"],
            cwd=NODE_WORKER,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm install of the pg package failed:\n{installed.stderr}")
    return NODE_WORKER / "worker.mjs"


class NodeWorker:
    def __init__(self, script: Path, schema: str, concurrency: int) -> None:
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["node", str(script), TEST_DSN, schema, str(concurrency), "2", "0.4"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"node worker failed to start:\n{self.log()}")
        self.worker_id = line.split()[1]

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


async def test_a_node_worker_shares_the_queue_and_its_jobs_survive_a_sigkill(
    pool: asyncpg.Pool, migrated: str, node_worker_script: Path
) -> None:
    q = quote_identifier(migrated)
    await pool.execute(side_jobs.side_table_sql(migrated))
    node = NodeWorker(node_worker_script, migrated, concurrency=4)
    try:
        with replicas(TEST_DSN, migrated, 2, "--concurrency", "4") as python_replicas:
            job_ids: list[str] = await pool.fetchval(
                f"SELECT {q}.schedule_jobs(array_agg({q}.job_request("
                " 'tests.support.side_jobs:work', '[0.3]'))) FROM generate_series(1, 150)"
            )

            async def node_is_busy() -> bool:
                # Jobs whose code has started (their row is written), not only claimed: a
                # claim commits a moment before its jobs start, longer on a busy machine.
                # And a job it finished is recorded succeeded under its attempt: its code
                # ends a moment before the outcome commits, and a SIGKILL between the two
                # leaves the node no final attempt of its own.
                row = await pool.fetchrow(
                    f"SELECT count(*) FILTER (WHERE e.finished_at IS NOT NULL"
                    "                        AND j.status = 'succeeded'"
                    "                        AND j.attempts = e.attempt) AS recorded,"
                    "        count(*) FILTER (WHERE e.finished_at IS NULL) AS running"
                    f" FROM {q}.executions e JOIN {q}.jobs j USING (job_id)"
                    " WHERE e.worker_id = $1",
                    node.worker_id,
                )
                assert row is not None
                return bool(row["recorded"] >= 1 and row["running"] >= 3)

            await wait_until(node_is_busy, message="the node worker to run jobs")
            node.process.send_signal(signal.SIGKILL)

            async def all_succeeded() -> bool:
                done = await pool.fetchval(
                    f"SELECT count(*) FROM {q}.jobs WHERE status = 'succeeded'"
                )
                return bool(done == 150)

            await wait_until(all_succeeded, timeout=60, message="all 150 jobs to succeed")
            python_pids = {replica.pid for replica in python_replicas}
    finally:
        node.stop()

    rows = await pool.fetch(
        f"SELECT e.job_id, e.attempt, e.pid, e.worker_id, e.finished_at IS NOT NULL AS finished,"
        f" j.attempts AS final_attempt FROM {q}.executions e JOIN {q}.jobs j USING (job_id)"
    )
    # Every job's recorded attempt ran once and finished.
    final = {r["job_id"]: r for r in rows if r["attempt"] == r["final_attempt"]}
    assert Counter(r["job_id"] for r in rows if r["attempt"] == r["final_attempt"]) == Counter(
        dict.fromkeys(job_ids, 1)
    )
    assert all(r["finished"] for r in final.values())
    # The node worker took a share. Only the SIGKILL made a job run twice: every other
    # execution is an attempt of the killed node worker (cut short, or done but not yet
    # recorded), run again by a Python replica under a newer attempt number.
    by_node = [r for r in rows if str(r["worker_id"]) == node.worker_id]
    assert any(r["attempt"] == r["final_attempt"] for r in by_node)
    repeated = [r for r in rows if r["attempt"] != r["final_attempt"]]
    assert repeated, "the node worker was killed mid-job"
    for attempt in repeated:
        assert str(attempt["worker_id"]) == node.worker_id
        assert final[attempt["job_id"]]["attempt"] > attempt["attempt"]
        assert final[attempt["job_id"]]["pid"] in python_pids
    # Claimed but killed before its first line ran: a lost lease with no execution row.
    lost = await pool.fetchval(f"SELECT sum(lost_leases) FROM {q}.jobs")
    assert lost >= len(repeated)
