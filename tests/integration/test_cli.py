from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from scheduler import CronTrigger, JobStatus, Scheduler, TaskNotNameableError
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, wait_until
from tests.support.processes import ROOT


def cli(*args: str, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", "--dsn", TEST_DSN, "--schema", schema, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


async def test_migrate_status_show_and_cancel(pool: asyncpg.Pool, schema: str) -> None:
    migrated = cli("migrate", schema=schema)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied [1, 2, 3, 4]" in migrated.stdout
    assert "applied nothing" in cli("migrate", schema=schema).stdout

    producer = Scheduler(pool, schema=schema)
    job_id = await producer.schedule(jobs.record, args=("cli",), delay=600)
    status = cli("status", schema=schema)
    assert "pending    1" in status.stdout
    shown = cli("show", job_id, schema=schema)
    assert json.loads(shown.stdout)["args"] == ["cli"]
    assert cli("cancel", job_id, schema=schema).stdout.strip() == "cancelled"
    assert cli("cancel", job_id, schema=schema).returncode == 1
    assert cli("show", "missing", schema=schema).returncode == 1


async def test_schedules_are_listed_paused_resumed_and_removed(
    pool: asyncpg.Pool, migrated: str
) -> None:
    producer = Scheduler(pool, schema=migrated)
    await producer.add_schedule(
        jobs.record, CronTrigger("0 9 * * 1-5", "Europe/Berlin"), schedule_id="standup", args=("s",)
    )
    listed = cli("schedules", schema=migrated)
    assert "standup" in listed.stdout and "Europe/Berlin" in listed.stdout
    assert cli("pause", "standup", schema=migrated).stdout.strip() == "paused standup"
    [row] = [
        json.loads(line)
        for line in cli("schedules", "--json", schema=migrated).stdout.split("\n")
        if line
    ]
    assert (row["paused"], row["trigger"]["expression"]) == (True, "0 9 * * 1-5")
    assert cli("resume", "standup", schema=migrated).returncode == 0
    schedule = await producer.get_schedule("standup")
    assert schedule is not None and not schedule.paused
    assert cli("remove", "standup", schema=migrated).returncode == 0
    assert await producer.get_schedule("standup") is None
    missing = cli("remove", "standup", schema=migrated)
    assert missing.returncode == 1 and "no schedule" in missing.stderr


def test_hostile_schema_names_are_refused_by_the_cli() -> None:
    result = cli("status", schema='x"; drop table jobs; --')
    assert result.returncode == 2 and "not allowed" in result.stderr


async def test_a_worker_runs_tasks_from_imported_modules_and_stops_on_sigterm(
    pool: asyncpg.Pool, schema: str, tmp_path: Path
) -> None:
    assert cli("migrate", schema=schema).returncode == 0
    marker = tmp_path / "ran.txt"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler",
            "--dsn",
            TEST_DSN,
            "--schema",
            schema,
            "worker",
            "--import",
            "tests.support.cli_tasks",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stdout is not None
        assert "running" in worker.stdout.readline()
        # The producer does not import the task: it schedules it by name.
        producer = Scheduler(pool, schema=schema)
        job_id = await producer.schedule("cli-test:touch", args=(str(marker),))
        await wait_until(partial(has_status, producer, job_id, JobStatus.SUCCEEDED))
        assert marker.read_text() == "ran"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        # A graceful stop deregisters the worker (its lease ends now, not on expiry).
        assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".workers') == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


async def test_scheduling_by_an_invalid_name_is_refused(pool: asyncpg.Pool, schema: str) -> None:
    with pytest.raises(TaskNotNameableError):
        await Scheduler(pool, schema=schema).schedule("rm -rf /")
