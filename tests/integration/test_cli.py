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

from scheduler import CronTrigger, JobStatus, Scheduler, TaskNotNameableError, __version__
from scheduler.cli import build_parser, worker_settings
from scheduler.postgres import migrate as migrations
from scheduler.postgres.sql import quote_identifier
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, unique_schema, wait_until
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
    assert f"applied {list(range(1, migrations.latest_version() + 1))}" in migrated.stdout
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


async def test_rows_written_by_sql_are_shown_whatever_they_hold(
    pool: asyncpg.Pool, migrated: str
) -> None:
    # Not due (cancelled, paused): only their reading is under test.
    await pool.execute(
        f"INSERT INTO {quote_identifier(migrated)}.jobs (job_id, task_name, args, status,"
        " execution_time) VALUES ('odd', 'no.such:task', $1::jsonb, 'cancelled', 'infinity')",
        "[" + "9" * 5000 + "]",
    )
    await pool.execute(
        f"INSERT INTO {quote_identifier(migrated)}.schedules (schedule_id, task_name, trigger,"
        " paused, next_fire_time) VALUES ('odd', 'no.such:task', '{}', true, '20000-01-01Z')"
    )
    shown = cli("show", "odd", schema=migrated)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout, parse_int=str)
    assert job["execution_time"].startswith("9999-12-31") and job["args"] == ["9" * 5000]
    listed = cli("schedules", "--json", schema=migrated)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["next_fire_time"].startswith("9999-12-31")
    assert cli("schedules", schema=migrated).returncode == 0


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


async def test_jobs_are_listed_filtered_retried_and_purged(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    producer = Scheduler(pool, schema=migrated)
    for n in range(5):
        await producer.schedule(jobs.record, args=("old",), job_id=f"old-{n}")
    await producer.schedule(jobs.always_fail, args=("x",), job_id="broken")
    await producer.schedule(jobs.record, args=("p",), job_id="waiting", delay=600)
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'succeeded', finished_at = now() - interval '10 days',"
        " updated_at = now() - interval '10 days' WHERE job_id LIKE 'old-%'"
    )
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'failed', finished_at = now(), last_error = 'boom'"
        " WHERE job_id = 'broken'"
    )

    listed = cli("jobs", "--since", "1d", schema=migrated)
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == {"broken", "waiting"}
    failed = cli("jobs", "--status", "failed", "--json", schema=migrated)
    [row] = [json.loads(line) for line in failed.stdout.splitlines()]
    assert (row["job_id"], row["last_error"], row["task_name"]) == (
        "broken",
        "boom",
        "tests.support.jobs:always_fail",
    )
    by_task = cli("jobs", "--task", "tests.support.jobs:record", "--limit", "2", schema=migrated)
    assert len(by_task.stdout.splitlines()) == 2
    bad_time = cli("jobs", "--since", "2030-01-01T00:00", schema=migrated)
    assert bad_time.returncode == 2 and "time zone" in bad_time.stderr

    assert cli("retry", "broken", schema=migrated).stdout.strip() == "retrying broken"
    job = await producer.get_job("broken")
    assert job is not None and job.status is JobStatus.PENDING
    again = cli("retry", "broken", schema=migrated)
    assert again.returncode == 2 and "only failed or cancelled" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    purged = cli("purge", "--before", "7d", "--batch-size", "2", schema=migrated)
    assert purged.stdout.strip() == "purged 5 job(s)", purged.stderr
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.jobs") == 2


async def test_stats_read_the_monitoring_views(pool: asyncpg.Pool, migrated: str) -> None:
    producer = Scheduler(pool, schema=migrated)
    await producer.schedule(jobs.record, args=("s",))
    await producer.schedule(jobs.record, args=("s",), delay=600)
    text = cli("stats", schema=migrated)
    assert text.returncode == 0, text.stderr
    assert "tests.support.jobs:record" in text.stdout and "live workers 0" in text.stdout
    [task] = json.loads(cli("stats", "--json", schema=migrated).stdout)["tasks"]
    assert (task["task_name"], task["due_now"], task["future"]) == (
        "tests.support.jobs:record",
        1,
        1,
    )


async def test_version_and_log_level(pool: asyncpg.Pool, schema: str) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "scheduler", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert version.stdout.strip() == f"scheduler {__version__}"
    quiet = cli("--log-level", "WARNING", "migrate", schema=schema)
    assert quiet.returncode == 0 and "applied migration" not in quiet.stderr
    other = unique_schema()
    try:
        loud = cli("migrate", schema=other)
        assert "INFO scheduler.migrate: applied migration 0001_initial" in loud.stderr
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(other)} CASCADE")


async def test_an_unmigrated_database_says_to_run_migrate(schema: str) -> None:
    status = cli("status", schema=schema)
    assert status.returncode == 1 and "run `scheduler migrate`" in status.stderr
    stats = cli("stats", schema=schema)
    assert stats.returncode == 2 and "run `scheduler migrate`" in stats.stderr


@pytest.mark.parametrize(
    ("imports", "fragment"),
    [
        (["--import", "no_such_module_here"], "cannot import --import module"),
        ([], "no tasks to run"),
    ],
)
async def test_a_worker_without_tasks_fails_in_one_line(
    migrated: str, imports: list[str], fragment: str
) -> None:
    result = cli("worker", *imports, schema=migrated)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr


def test_a_worker_takes_every_replica_setting_from_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_POLL_INTERVAL", "2.5")
    monkeypatch.setenv("SCHEDULER_LEASE_TIME", "60")
    options = build_parser().parse_args(
        [
            "worker",
            "--import",
            "m",
            "--lease-time",
            "40",
            "--concurrency",
            "3",
            "--unrunnable-job-timeout",
            "none",
            "--orphan-retries",
            "0",
            "--process-pool-size",
            "2",
            "--http-allowed-host",
            "api.example.com",
        ]
    )
    assert worker_settings(options) == {
        "poll_interval": 2.5,  # from the environment
        "lease_time": 40.0,  # the flag wins over SCHEDULER_LEASE_TIME
        "max_concurrent_jobs": 3,
        "unrunnable_job_timeout": None,
        "orphan_retries": 0,
        "process_pool_size": 2,
        "http_allowed_hosts": ["api.example.com"],
    }
    monkeypatch.setenv("SCHEDULER_HTTP_ALLOWED_HOSTS", "a.example.com, *.b.example.com")
    assert worker_settings(build_parser().parse_args(["worker"])) == {
        "poll_interval": 2.5,
        "lease_time": 60.0,
        "http_allowed_hosts": ["a.example.com", "*.b.example.com"],
    }


def test_a_worker_can_run_through_pgbouncer_in_transaction_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two settings docs/scale.md asks for behind PgBouncer, as flags or variables."""
    options = build_parser().parse_args(
        ["--statement-cache-size", "0", "worker", "--listen-dsn", "postgresql://db/app"]
    )
    assert options.statement_cache_size == 0
    assert worker_settings(options)["listen_dsn"] == "postgresql://db/app"
    monkeypatch.setenv("SCHEDULER_STATEMENT_CACHE_SIZE", "0")
    monkeypatch.setenv("SCHEDULER_LISTEN_DSN", "postgresql://db/other")
    options = build_parser().parse_args(["worker"])
    assert options.statement_cache_size == 0
    assert worker_settings(options)["listen_dsn"] == "postgresql://db/other"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--statement-cache-size", "-1", "worker"])


def test_a_bad_worker_setting_is_one_line(schema: str) -> None:
    refused = cli(
        "worker", "--import", "tests.support.cli_tasks", "--lease-time", "soon", schema=schema
    )
    assert refused.returncode == 2 and "lease_time must be a number of seconds" in refused.stderr
    invalid = cli(
        "worker",
        "--import",
        "tests.support.cli_tasks",
        "--lease-time",
        "1",
        "--heartbeat-interval",
        "5",
        schema=schema,
    )
    assert invalid.returncode == 2
    assert invalid.stderr.strip().splitlines()[-1].startswith("error: heartbeat_interval")
    assert "Traceback" not in invalid.stderr


async def test_queues_are_paused_resumed_limited_and_listed(
    pool: asyncpg.Pool, schema: str
) -> None:
    assert cli("migrate", schema=schema).returncode == 0
    q = quote_identifier(schema)
    await pool.execute(f"INSERT INTO {q}.jobs (task_name, queue) VALUES ('t:f', 'mail')")
    paused = cli("pause-queue", "mail", schema=schema)
    assert paused.returncode == 0, paused.stderr
    limited = cli("queue-limits", "mail", "--concurrency", "2", "--rate", "5", schema=schema)
    assert "concurrency 2, rate 5/1s burst 1" in limited.stdout, limited.stderr
    assert cli("task-limits", "t:f", "--concurrency", "1", schema=schema).returncode == 0
    listed = cli("queues", schema=schema)
    [mail] = [line for line in listed.stdout.splitlines() if line.startswith("mail")]
    assert mail.split()[1:5] == ["1", "0", "0", "paused"] and "concurrency 2" in mail
    assert "task t:f: 0 running, concurrency 1" in listed.stdout
    as_json = json.loads(cli("queues", "--json", schema=schema).stdout)
    assert as_json["queues"][0]["limits"]["rate_limit"] == 5
    assert "resumed queue mail" in cli("resume-queue", "mail", schema=schema).stdout
    refused = cli("queue-limits", "mail", "--concurrency", "0", schema=schema)
    assert refused.returncode == 2 and "concurrency_limit must be" in refused.stderr
