"""Issue 15 with real replica processes: 200 process jobs across two replicas whose pools
have two places each. No replica ever has more than two children, and every job ran in a
child of the replica that claimed it."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import anyio
import asyncpg
import pytest

from scheduler import JobRequest, JobStatus, Scheduler
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import process_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import replicas

pytestmark = pytest.mark.processes


async def test_200_process_jobs_on_two_replicas_never_exceed_two_children_each(
    migrated: str, make_scheduler: SchedulerFactory, pool: asyncpg.Pool
) -> None:
    producer: Scheduler = make_scheduler()
    with replicas(TEST_DSN, migrated, 2, "--concurrency", "10", "--process-pool", "2") as pair:
        pids = [replica.pid for replica in pair]
        peak = dict.fromkeys(pids, 0)
        seen: dict[int, set[int]] = defaultdict(set)
        sampling = True

        async def sample() -> None:
            # /proc, not the replicas' word: children alive at each look, idle ones too.
            while sampling:
                for pid in pids:
                    children = process_jobs.child_pids(pid)
                    seen[pid] |= children
                    peak[pid] = max(peak[pid], len(children))
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            ids = await producer.schedule_many(
                JobRequest(process_jobs.whoami, args=(2_000,)) for _ in range(200)
            )

            async def all_finished() -> bool:
                unfinished = await pool.fetchval(
                    f"SELECT count(*) FROM {quote_identifier(migrated)}.jobs"
                    " WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
                )
                return bool(unfinished == 0)

            await wait_until(all_finished, timeout=120, message="200 process jobs")
            sampling = False
        jobs = [await producer.get_job(job_id) for job_id in ids]
    assert all(job is not None and job.status is JobStatus.SUCCEEDED for job in jobs)
    assert max(peak.values()) <= 2, peak
    by_replica: dict[int, set[int]] = defaultdict(set)
    for job in jobs:
        assert job is not None
        by_replica[job.result["ppid"]].add(job.result["pid"])
    # Both replicas worked; each job ran in a child of a replica, one of at most two there.
    assert set(by_replica) == set(pids)
    for replica_pid, children in by_replica.items():
        assert len(children) <= 2 and children <= seen[replica_pid]


async def test_a_replica_sigkilled_mid_job_takes_its_child_with_it(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """A CPU-bound child never reads its closed pipe: it must die with its parent."""
    producer: Scheduler = make_scheduler()
    pid_file = tmp_path / "pid"
    with replicas(TEST_DSN, migrated, 1, "--process-pool", "1") as [replica]:
        await producer.schedule(process_jobs.burn_cpu, args=(str(pid_file),))

        async def child_started() -> int:
            return int(pid_file.read_text()) if pid_file.exists() else 0

        child = await wait_until(child_started, message="the child's pid")
        replica.signal(signal.SIGKILL)

        async def child_gone() -> bool:
            return not process_jobs.alive(child)

        await wait_until(child_gone, message="the orphaned child to die")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
async def test_whatever_a_process_job_started_dies_with_its_replica(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path, signum: int
) -> None:
    """Issue 19.6: grandchildren go too, the one that left the process group included,
    whether the replica is SIGKILLed or shuts down."""
    producer: Scheduler = make_scheduler()
    pid_file = tmp_path / "pids"
    with replicas(TEST_DSN, migrated, 1, "--process-pool", "1") as [replica]:
        await producer.schedule(
            process_jobs.start_hidden_grandchildren_then_sleep, args=(str(pid_file),)
        )

        async def grandchildren_started() -> list[int]:
            text = pid_file.read_text() if pid_file.exists() else ""
            return [int(pid) for pid in text.split()]

        grandchildren = await wait_until(grandchildren_started, message="the grandchildren")
        assert all(process_jobs.alive(pid) for pid in grandchildren)
        replica.signal(signum)

        async def grandchildren_gone() -> bool:
            return not any(process_jobs.alive(pid) for pid in grandchildren)

        await wait_until(grandchildren_gone, timeout=30, message="the grandchildren to die")
