from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from scheduler import (
    CronTrigger,
    JobPriority,
    JobStatus,
    Scheduler,
    TaskNotNameableError,
    __version__,
)
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
    assert refused.returncode == 2 and "lease_time must be a duration" in refused.stderr
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


# -- every user error is one line, with a documented exit code (issue 19.3) ----------------


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr


USAGE, RUNTIME = 2, 1
_PARTS = urllib.parse.urlsplit(TEST_DSN)
SERVER = f"{_PARTS.hostname}:{_PARTS.port or 5432}"


@pytest.mark.parametrize(
    ("dsn", "code", "fragment"),
    [
        ("garbage", USAGE, "is not a PostgreSQL DSN"),
        ("mysql://u@h/db", USAGE, "scheme 'mysql' is not PostgreSQL"),
        ("postgresql://u@h:notaport/db", USAGE, "is not a port number"),
        ("host='127.0.0.1 dbname=test", USAGE, "no closing quote"),
        ("host=127.0.0.1 connect_timeout=3", USAGE, "not supported by asyncpg"),
        ("postgresql://postgres@127.0.0.1:1/test", RUNTIME, "refused the connection"),
        ("postgresql://postgres@no-such-host.invalid/test", RUNTIME, "cannot resolve the host"),
        (f"postgresql://no_such_role_x@{SERVER}/test", RUNTIME, "refused the login"),
        (f"postgresql://postgres@{SERVER}/no_such_database_x", RUNTIME, "check the database name"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["jobs"], ["enqueue", "m:f"]])
def test_a_bad_or_unreachable_dsn_is_one_line(
    dsn: str, code: int, fragment: str, command: list[str]
) -> None:
    assert_one_line(run("--dsn", dsn, *command), code, fragment)


@pytest.mark.parametrize(
    "command",
    [
        ["jobs"],
        ["stats"],
        ["show", "x"],
        ["attempts", "x"],
        ["cancel", "x"],
        ["retry", "x"],
        ["schedules"],
        ["pause", "x"],
        ["queues"],
        ["pause-queue", "q"],
        ["enqueue", "m:f"],
    ],
)
def test_a_missing_schema_says_to_migrate_in_one_line(command: list[str]) -> None:
    result = run("--dsn", TEST_DSN, "--schema", unique_schema(), *command)
    assert_one_line(result, USAGE, "run `scheduler migrate`")


@pytest.mark.parametrize(
    "command",
    [["show", "no-such-job"], ["attempts", "no-such-job"], ["retry", "no-such-job"]],
)
def test_an_unknown_job_is_a_runtime_failure_for_every_command(
    migrated: str, command: list[str]
) -> None:
    """Exit code 1 as the help's exit codes say (retry said 2, a usage error)."""
    result = run("--dsn", TEST_DSN, "--schema", migrated, *command)
    assert_one_line(result, RUNTIME, "no-such-job")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("raise RuntimeError('no config\\nat all')", "it raised RuntimeError: no config at all"),
        ("def broken(:\n", "SyntaxError"),
        ("import no_such_dependency_x", "No module named 'no_such_dependency_x'"),
    ],
)
def test_a_task_module_that_fails_to_import_is_one_line(
    tmp_path: Path, source: str, fragment: str
) -> None:
    (tmp_path / "bad_tasks_x.py").write_text(source)
    result = run(
        "--dsn", "garbage", "worker", "--import", "bad_tasks_x", env={"PYTHONPATH": str(tmp_path)}
    )
    assert_one_line(result, USAGE, fragment)


async def test_a_libpq_keyword_dsn_works_quoting_and_all(pool: asyncpg.Pool, schema: str) -> None:
    parts = urllib.parse.urlsplit(TEST_DSN)
    keywords = (
        f"host={parts.hostname} port = {parts.port or 5432} dbname='{parts.path.lstrip('/')}'"
        f" user={parts.username} application_name='cli keyword test'"
    )
    if parts.password:
        keywords += f" password='{parts.password}'"
    assert run("--dsn", keywords, "--schema", schema, "migrate").returncode == 0
    enqueued = run("--dsn", keywords, "--schema", schema, "enqueue", "m:f", "--delay", "1h")
    assert enqueued.returncode == 0, enqueued.stderr
    job = await Scheduler(pool, schema=schema).get_job(enqueued.stdout.strip())
    assert job is not None and job.task_name == "m:f"


# -- help texts, one duration syntax, filters that match nothing (issue 19.11) -------------


async def test_a_filter_that_matches_nothing_says_so_and_suggests_names(
    pool: asyncpg.Pool, migrated: str
) -> None:
    producer = Scheduler(pool, schema=migrated)
    await producer.schedule(jobs.record, args=("x",), delay=600)
    partial = cli("jobs", "--task", "recor", schema=migrated)
    assert partial.returncode == 0 and partial.stdout == ""
    assert "did you mean 'tests.support.jobs:record'?" in partial.stderr
    retried = cli("retry-failed", "--task", "record", schema=migrated)
    assert "did you mean 'tests.support.jobs:record'?" in retried.stderr
    nothing = cli("jobs", "--status", "failed", schema=migrated)
    assert nothing.stdout == "" and nothing.stderr.strip() == "no jobs match"
    exact = cli("jobs", "--task", "tests.support.jobs:record", schema=migrated)
    assert exact.stdout.count("tests.support.jobs:record") == 1 and exact.stderr == ""


# -- enqueue, the worker's start-up report, doctor (issue 23.5) --------------------------


async def test_enqueue_schedules_by_name_with_schedules_checks(
    pool: asyncpg.Pool, migrated: str
) -> None:
    producer = Scheduler(pool, schema=migrated)
    result = cli(
        "enqueue",
        "tests.support.jobs:record",
        "--args",
        '["a", 1]',
        "--kwargs",
        '{"value": {"n": 2}}',
        "--delay",
        "1h",
        "--job-id",
        "nightly",
        "--priority",
        "high",
        "--queue",
        "mail",
        "--max-retries",
        "3",
        schema=migrated,
    )
    assert result.returncode == 0 and result.stdout.strip() == "nightly", result.stderr
    job = await producer.get_job("nightly")
    assert job is not None
    assert (list(job.args), job.kwargs, job.priority, job.queue, job.max_retries) == (
        ["a", 1],
        {"value": {"n": 2}},
        JobPriority.HIGH,
        "mail",
        3,
    )
    assert job.status is JobStatus.PENDING
    again = cli("enqueue", "tests.support.jobs:record", "--job-id", "nightly", schema=migrated)
    assert_one_line(again, USAGE, "nightly")
    ignored = cli(
        "enqueue",
        "tests.support.jobs:record",
        "--job-id",
        "nightly",
        "--conflict",
        "ignore",
        schema=migrated,
    )
    assert ignored.returncode == 0 and ignored.stdout.strip() == "nightly"
    at = cli("enqueue", "m:f", "--at", "2099-01-01T00:00:00+00:00", schema=migrated)
    job = await producer.get_job(at.stdout.strip())
    assert job is not None and job.execution_time.year == 2099
    too_big = cli("enqueue", "m:f", "--args", json.dumps(["x" * 70_000]), schema=migrated)
    assert_one_line(too_big, USAGE, "bytes")


async def test_a_worker_logs_what_it_serves_when_it_starts(migrated: str) -> None:
    assert cli("queue-limits", "mail", "--concurrency", "2", schema=migrated).returncode == 0
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler",
            "--dsn",
            TEST_DSN,
            "--schema",
            migrated,
            "worker",
            "--import",
            "tests.support.cli_tasks",
            "--concurrency",
            "3",
            "--queue",
            "default",
            "--queue",
            "mail",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stdout is not None
        assert "running" in worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    block = stderr[stderr.index("INFO scheduler.cli: worker ") :]
    assert f"schema       {migrated}" in block
    assert "tasks        cli-test:touch" in block
    assert "queues       default, mail" in block
    assert "concurrency  3 jobs at once" in block
    assert "limits       mail: concurrency 2" in block
    assert "at most 7 connections" in block  # 4 + concurrency


def doctor(*args: str, schema: str) -> subprocess.CompletedProcess[str]:
    return cli("doctor", *args, schema=schema)


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line[6:19].strip(): line[:4].strip() for line in result.stdout.splitlines()}


async def test_doctor_passes_a_healthy_deployment(migrated: str) -> None:
    result = doctor(schema=migrated)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result) == {
        "connection": "ok",
        "migrations": "ok",
        "roles": "ok",
        "listen/notify": "ok",
        "pgbouncer": "ok",
        "clock skew": "ok",
        "connections": "ok",
    }, result.stdout


async def test_doctor_fails_an_unmigrated_schema_and_a_role_without_grants(
    pool: asyncpg.Pool, schema: str
) -> None:
    unmigrated = doctor(schema=schema)
    assert unmigrated.returncode == 1
    assert verdicts(unmigrated)["migrations"] == "fail"
    assert "run `scheduler migrate`" in unmigrated.stdout

    assert cli("migrate", schema=schema).returncode == 0
    role = f"doctor_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        bare = doctor("--runtime-role", role, schema=schema)
        assert bare.returncode == 1 and verdicts(bare)["roles"] == "fail"
        assert f"SELECT {schema}.grant_runtime_role('{role}')" in bare.stdout
        await pool.execute(f"SELECT {quote_identifier(schema)}.grant_runtime_role($1)", role)
        granted = doctor("--runtime-role", role, "--producer-role", role, schema=schema)
        assert granted.returncode == 0, granted.stdout
        missing = doctor("--producer-role", "no_such_role_x", schema=schema)
        assert missing.returncode == 1 and "'no_such_role_x' does not exist" in missing.stdout
    finally:
        await pool.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_doctor_fails_an_oversized_fleet_and_an_unreachable_server(migrated: str) -> None:
    crowded = doctor("--replicas", "50", "--pool-size", "20", schema=migrated)
    assert crowded.returncode == 1 and verdicts(crowded)["connections"] == "fail"
    unreachable = run("--dsn", "postgresql://postgres@127.0.0.1:1/test", "doctor")
    assert unreachable.returncode == 1
    assert unreachable.stdout.startswith("fail  connection") and "refused" in unreachable.stdout


def test_a_port_in_use_is_one_line_for_the_dashboard_and_the_metrics(migrated: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        dashboard = run("--dsn", TEST_DSN, "--schema", migrated, "dashboard", "--port", port)
        assert_one_line(dashboard, USAGE, "choose another --port")
        metrics = run(
            "--dsn", TEST_DSN, "--schema", migrated, "worker",
            "--import", "tests.support.cli_tasks", "--metrics-port", port,
        )  # fmt: skip
        assert_one_line(metrics, USAGE, "choose another --metrics-port")


@pytest.fixture
def pgbouncer(tmp_path: Path) -> Iterator[str]:
    """A private PgBouncer in transaction mode in front of the test server; its DSN."""
    binary = shutil.which("pgbouncer")
    if binary is None:
        pytest.skip("pgbouncer is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urllib.parse.urlsplit(TEST_DSN)
    dbname = parts.path.lstrip("/")
    config, users = tmp_path / "pgbouncer.ini", tmp_path / "users.txt"
    users.write_text(f'"{parts.username}" ""\n')  # trust still needs the user listed
    os.chmod(users, 0o644)
    config.write_text(
        f"[databases]\n{dbname} = host={parts.hostname} port={parts.port or 5432}"
        f" dbname={dbname} user={parts.username}"
        + (f" password={parts.password}" if parts.password else "")
        + f"\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {users}\npool_mode = transaction\ndefault_pool_size = 2\nunix_socket_dir =\n"
    )
    os.chmod(tmp_path, 0o755)  # PgBouncer refuses root: as root it runs as nobody
    os.chmod(config, 0o644)
    as_nobody = ["-u", "nobody"] if os.geteuid() == 0 else []
    server = subprocess.Popen(
        [binary, *as_nobody, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
        yield f"postgresql://{parts.username}@127.0.0.1:{port}/{dbname}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_doctor_detects_pgbouncer_in_transaction_mode(pgbouncer: str, migrated: str) -> None:
    result = run("--dsn", pgbouncer, "--schema", migrated, "doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    found = verdicts(result)
    assert (found["connection"], found["listen/notify"], found["pgbouncer"]) == (
        "ok",
        "fail",
        "warn",
    ), result.stdout
    assert "pooler (PgBouncer?)" in result.stdout and "LISTEN does not work" in result.stdout


async def test_queues_show_why_a_limit_row_is_not_enforced(pool: asyncpg.Pool, schema: str) -> None:
    """Issue 19: an out-of-range rate_period is refused by `queue-limits`, and a row that
    holds one anyway (by hand, or from before migration 0011) is listed with the reason."""
    assert cli("migrate", schema=schema).returncode == 0
    refused = cli("queue-limits", "mail", "--rate", "5", "--per", "0.0001", schema=schema)
    assert refused.returncode == 2 and "rate_period must be seconds from 0.001" in refused.stderr
    q = quote_identifier(schema)
    await pool.execute(
        f"INSERT INTO {q}.limits (scope, name, kind, settings) VALUES ('queue', 'mail', 'rate',"
        """ '{"rate_limit": 5, "rate_period": 1e-310, "rate_burst": 1}')"""
    )
    listed = cli("queues", schema=schema)
    assert "limits not enforced, jobs wait: rate_period must be seconds" in listed.stdout
    as_json = json.loads(cli("queues", "--json", schema=schema).stdout)
    assert "rate_period" in as_json["queues"][0]["problem"]
