"""Process execution (issue 15): a task declared with executor="process" runs in a child of
the replica's pool, which a timeout, a cancel or a shutdown kills; a child that dies fails
only its attempt. Real children, real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler import (
    AttemptOutcome,
    JobStatus,
    Scheduler,
)
from tests.conftest import SchedulerFactory
from tests.support import jobs, process_jobs
from tests.support.db import has_status, holds, unique_schema, wait_until


async def _pid_written(path: Path) -> int:
    async def written() -> int:
        try:
            return int(path.read_text() or 0)  # noqa: ASYNC240 - a tiny local file
        except (OSError, ValueError):
            return 0

    return await wait_until(written, message=f"a pid in {path}")


async def _warm_up(scheduler: Scheduler) -> None:
    """The timeout covers the whole attempt, a child's start included (a second or more
    on a loaded machine): start the pool's child before timing anything."""
    job = await scheduler.wait_for_job(await scheduler.schedule(process_jobs.whoami), timeout=60)
    assert job.status is JobStatus.SUCCEEDED, job.last_error


async def _gone(pid: int) -> bool:
    return not process_jobs.alive(pid)


async def test_a_process_job_runs_in_a_child_with_its_job_context_and_result(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    async with make_scheduler(process_pool_size=1) as scheduler:
        job_id = await scheduler.schedule(process_jobs.whoami, args=(10,))
        async_id = await scheduler.schedule(process_jobs.async_whoami)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        async_job = await scheduler.wait_for_job(async_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED, job.last_error
    assert job.result["pid"] != os.getpid() and job.result["ppid"] == os.getpid()
    assert job.result["job_id"] == job_id and job.result["attempt"] == 1
    assert job.result["task_name"] == "tests.support.process_jobs:whoami"
    assert async_job.status is JobStatus.SUCCEEDED, async_job.last_error
    assert async_job.result["job_id"] == async_id
    # One place in the pool: the same child ran both, and it is gone after shutdown.
    assert async_job.result["pid"] == job.result["pid"]
    assert await wait_until(lambda: _gone(job.result["pid"]), message="the child to exit")


async def test_a_cpu_bound_process_job_times_out_and_its_child_is_gone(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    async with make_scheduler(process_pool_size=1) as scheduler:
        await _warm_up(scheduler)
        job_id = await scheduler.schedule(
            process_jobs.burn_cpu, args=(str(pid_file),), timeout=1.0, max_retries=0
        )
        pid = await _pid_written(pid_file)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        # The runner reaps the child before it records the outcome.
        assert not process_jobs.alive(pid)
        assert pid not in process_jobs.child_pids(os.getpid())
    assert job.status is JobStatus.FAILED
    assert job.last_error == "timed out after 1.0 seconds"
    [attempt] = await scheduler.get_attempts(job_id)
    assert attempt.outcome is AttemptOutcome.TIMED_OUT


async def test_cancelling_a_running_process_job_returns_true_and_its_child_is_gone(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(process_jobs.burn_cpu, args=(str(pid_file),))
        pid = await _pid_written(pid_file)
        assert await scheduler.cancel_job(job_id) is True
        assert not process_jobs.alive(pid)
        job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    [attempt] = await scheduler.get_attempts(job_id)
    assert attempt.outcome is AttemptOutcome.CANCELLED


async def test_a_timeout_also_kills_what_the_job_started(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    async with make_scheduler(process_pool_size=1) as scheduler:
        await _warm_up(scheduler)
        job_id = await scheduler.schedule(
            process_jobs.start_grandchild_then_burn, args=(str(pid_file),), timeout=1.0
        )
        grandchild = await _pid_written(pid_file)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        # An orphan is reaped by init, not by us: wait until it is gone.
        await wait_until(lambda: _gone(grandchild), message="the grandchild to die")
    assert job.status is JobStatus.FAILED


@pytest.mark.parametrize("stop", ["timeout", "cancel", "shutdown"])
async def test_every_stop_kills_the_grandchildren_even_one_in_its_own_session(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path, stop: str
) -> None:
    """Issue 19.6: a grandchild that called setsid() is out of reach of a group kill."""
    pid_file = tmp_path / "pids"
    scheduler = make_scheduler(process_pool_size=1, shutdown_grace=0.5)
    async with scheduler:
        await _warm_up(scheduler)
        job_id = await scheduler.schedule(
            process_jobs.start_hidden_grandchildren_then_sleep,
            args=(str(pid_file),),
            timeout=2.0 if stop == "timeout" else None,
        )

        async def grandchildren_started() -> list[int]:
            text = pid_file.read_text() if pid_file.exists() else ""
            return [int(pid) for pid in text.split()]

        grandchildren = await wait_until(grandchildren_started, message="the grandchildren")
        if stop == "timeout":
            await scheduler.wait_for_job(job_id, timeout=30)
        elif stop == "cancel":
            assert await scheduler.cancel_job(job_id) is True
    # Left by "shutdown" with the job still running: the drain's grace kills its child.

    async def gone() -> bool:
        return not any(process_jobs.alive(pid) for pid in grandchildren)

    await wait_until(gone, message="the grandchildren to die")


@pytest.mark.parametrize(
    ("crash", "args", "death"),
    [
        (process_jobs.exit_abruptly, (3,), "exited with status 3"),
        (process_jobs.kill_itself, (), "was killed by SIGKILL"),
        (process_jobs.segfault, (), "was killed by SIGSEGV"),
    ],
)
async def test_a_child_that_dies_fails_its_attempt_and_the_replica_runs_on(
    migrated: str,
    make_scheduler: SchedulerFactory,
    crash: object,
    args: tuple[int, ...],
    death: str,
) -> None:
    key = unique_schema("k")
    async with make_scheduler(process_pool_size=2) as scheduler:
        crashed = await scheduler.schedule(crash, args=args, max_retries=1)  # type: ignore[arg-type]
        others = [await scheduler.schedule(process_jobs.whoami) for _ in range(4)]
        in_loop = await scheduler.schedule(jobs.record, args=(key,))
        job = await scheduler.wait_for_job(crashed, timeout=30)
        for other in [*others, in_loop]:
            finished = await scheduler.wait_for_job(other, timeout=30)
            assert finished.status is JobStatus.SUCCEEDED, finished.last_error
        # After the crashes the pool still works (a new child took the dead one's place).
        after = await scheduler.wait_for_job(
            await scheduler.schedule(process_jobs.whoami), timeout=30
        )
        assert after.status is JobStatus.SUCCEEDED
    assert job.status is JobStatus.FAILED
    attempts = await scheduler.get_attempts(crashed)
    assert [a.outcome for a in attempts] == [AttemptOutcome.FAILED, AttemptOutcome.FAILED]
    assert job.last_error is not None and death in job.last_error


async def test_an_exception_in_the_child_is_stored_with_its_traceback(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    async with make_scheduler() as scheduler:
        failed = await scheduler.schedule(process_jobs.fail_loudly, args=("from the child",))
        unstorable = await scheduler.schedule(process_jobs.return_unstorable)
        job = await scheduler.wait_for_job(failed, timeout=30)
        bad_result = await scheduler.wait_for_job(unstorable, timeout=30)
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "ValueError: from the child" in job.last_error
    assert "in fail_loudly" in job.last_error  # the child's own frame
    assert bad_result.status is JobStatus.FAILED and bad_result.last_error is not None
    assert "cannot be stored" in bad_result.last_error


async def test_a_process_job_can_snooze(migrated: str, make_scheduler: SchedulerFactory) -> None:
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(process_jobs.snooze_once, args=(0.1,))
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED and job.result == 2
    outcomes = [a.outcome for a in await scheduler.get_attempts(job_id)]
    assert outcomes == [AttemptOutcome.SNOOZED, AttemptOutcome.SUCCEEDED]


async def test_children_are_recycled_after_n_jobs(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    async with make_scheduler(process_pool_size=1, process_max_jobs_per_child=2) as scheduler:
        pids = []
        for _ in range(5):
            job = await scheduler.wait_for_job(
                await scheduler.schedule(process_jobs.whoami), timeout=30
            )
            pids.append(job.result["pid"])
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert len(set(pids)) == 3


async def test_children_are_recycled_when_their_memory_grows(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """A child whose resident memory passes the limit after a job is replaced."""
    async with make_scheduler(
        process_pool_size=1, process_max_memory_per_child_mb=200
    ) as scheduler:
        pids = []
        for megabytes in (1, 1, 250, 1):
            job = await scheduler.wait_for_job(
                await scheduler.schedule(process_jobs.grow, args=(megabytes,)), timeout=60
            )
            assert job.status is JobStatus.SUCCEEDED, job.last_error
            pids.append(job.result)
    assert pids[0] == pids[1] == pids[2] != pids[3]


async def test_shutdown_stops_the_children_within_the_grace_period(
    migrated: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    scheduler = make_scheduler(process_pool_size=2)
    await scheduler.start()
    job_id = await scheduler.schedule(process_jobs.burn_cpu, args=(str(pid_file),))
    idle = await scheduler.wait_for_job(await scheduler.schedule(process_jobs.whoami), timeout=30)
    pid = await _pid_written(pid_file)
    assert process_jobs.child_pids(os.getpid()) == {pid, idle.result["pid"]}
    await scheduler.shutdown(grace=0.3)
    assert process_jobs.child_pids(os.getpid()) == set()
    assert not process_jobs.alive(pid)
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING  # released to a peer
    [attempt] = await scheduler.get_attempts(job_id)
    assert attempt.outcome is AttemptOutcome.RELEASED


async def test_process_jobs_beyond_the_pool_size_wait_for_a_child(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """Ten claimed at once with two places: at most two children, all ten succeed."""
    async with make_scheduler(max_concurrent_jobs=10, process_pool_size=2) as scheduler:
        ids = [await scheduler.schedule(process_jobs.whoami, args=(20_000,)) for _ in range(10)]
        seen: set[int] = set()

        async def all_done() -> bool:
            seen.update(process_jobs.child_pids(os.getpid()))
            assert len(process_jobs.child_pids(os.getpid())) <= 2
            return all([await has_status(scheduler, i, JobStatus.SUCCEEDED) for i in ids])

        await wait_until(all_done, message="ten process jobs")
    results = [(await scheduler.get_job(i)).result["pid"] for i in ids]  # type: ignore[union-attr]
    assert len(set(results)) <= 2


async def test_sync_tasks_still_run_in_threads_by_default(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        job_id = await scheduler.schedule(jobs.record_sync, args=(key,))
        await wait_until(lambda: has_status(scheduler, job_id, JobStatus.SUCCEEDED))
    [call] = jobs.calls(key)
    assert call["thread"].startswith("scheduler-job")
    assert await holds(not process_jobs.child_pids(os.getpid()))
    assert isinstance(scheduler, Scheduler)
