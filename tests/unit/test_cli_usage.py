"""The CLI's usage errors that need no database: each is one line on stderr, exit code 2,
before anything connects (the DSN points at a closed port, and the unit tier's conftest
fails any connection). The commands at work against PostgreSQL:
tests/integration/test_cli.py."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from scheduler.cli import build_parser, main, worker_settings
from tests.support.processes import ROOT
from tests.support.unconnected import NEVER_CONNECTED_DSN

USAGE = 2


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`scheduler ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        code: int | str | None = main(list(args))
    except SystemExit as exit:  # argparse's own errors and --help
        code = exit.code
    captured = capsys.readouterr()
    status = 0 if code is None else code if isinstance(code, int) else 1
    return status, captured.out, captured.err


def assert_one_line(result: tuple[int, str, str], code: int, fragment: str) -> None:
    returncode, _, stderr = result
    assert "Traceback" not in stderr, stderr
    assert returncode == code, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and fragment in stderr, stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["jobs", "--limit", "0"], "outside 1.."),
        (["jobs", "--since", "soon"], "is not a time"),
        (["retry", "x", "--delay", "later"], "is not a duration"),
        (["retry-failed", "--delay", "-1"], "is not a duration"),
        (["purge", "--before", "2030-01-01T00:00"], "time zone"),
        (["purge"], "--before"),
        (["queue-limits", "q", "--per", "often"], "is not a duration"),
        (["queue-limits", "q", "--concurrency", "lots"], "invalid int"),
        (["enqueue", "m:f", "--args", "{"], "--args is not JSON"),
        (["enqueue", "m:f", "--args", "{}"], "must be a JSON list"),
        (["enqueue", "m:f", "--kwargs", "[1]"], "must be a JSON dict"),
        (["enqueue", "m:f", "--at", "2030-01-01T00:00"], "no time zone"),
        (["enqueue", "m:f", "--at", "2030-01-01T00:00Z", "--delay", "5"], "not allowed with"),
        (["enqueue", "m:f", "--priority", "urgent"], "unknown priority"),
        (["enqueue", "m:f", "--conflict", "maybe"], "unknown conflict policy"),
        (["enqueue", "m:f", "--max-retries", "-1"], "outside 0.."),
        (["dashboard", "--port", "99999"], "outside 1..65535"),
        (["worker", "--import", "tests.support.cli_tasks", "--retention", "forever"], "duration"),
        (["no-such-command"], "invalid choice"),
        (["--log-level", "LOUD", "status"], "invalid choice"),
        (["show"], "job_id"),
        # These four were found only after connecting.
        (["jobs", "--status", "lost"], "invalid choice: 'lost'"),
        (["enqueue", "rm -rf /"], "'rm -rf /' may contain only letters"),
        (["enqueue", "m:f", "--queue", ""], "queue"),
        (["worker", "--import", "tests.support.cli_tasks", "--concurrency", "0"], ">= 1"),
        # Found only after connecting, when the scheduler started on its pool.
        (["worker", "--import", "tests.support.cli_tasks", "--pool-size", "1"], "--no-listen"),
    ],
)
def test_bad_option_values_of_every_command_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    result = run_cli(capsys, "--dsn", NEVER_CONNECTED_DSN, "--schema", "never_made", *args)
    assert_one_line(result, USAGE, fragment)


def test_hostile_schema_names_are_refused_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_cli(
        capsys, "--dsn", NEVER_CONNECTED_DSN, "--schema", 'x"; drop table jobs; --', "status"
    )
    assert code == 2 and "not allowed" in stderr


def test_help_is_complete_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, top, _ = run_cli(capsys, "--help")
    assert code == 0
    assert top.rstrip().endswith("describes each command.")
    assert "exit codes: 0 success; 1" in top
    [commands] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    for name in commands.choices:
        code, shown, _ = run_cli(capsys, name, "--help")
        assert code == 0 and shown.startswith("usage: scheduler"), name


def test_the_dashboard_without_its_extra_says_so_once() -> None:
    # A fresh interpreter: the dashboard's packages are hidden before anything imports them.
    blocked = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None;"
        " from scheduler.cli import main; sys.exit(main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked, "--dsn", NEVER_CONNECTED_DSN, "dashboard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert_one_line(
        (result.returncode, result.stdout, result.stderr),
        USAGE,
        "pip install 'pgcadence[dashboard]'",
    )
    assert result.stderr.count("extra") == 1


def test_every_duration_option_takes_the_same_syntax() -> None:
    parse = build_parser().parse_args
    assert parse(["retry", "x", "--delay", "15m"]).delay == 900
    assert parse(["retry-failed", "--delay", "90"]).delay == 90
    assert parse(["queue-limits", "q", "--per", "1h"]).per == 3600
    assert parse(["enqueue", "m:f", "--delay", "30s"]).delay == 30
    settings = worker_settings(parse(["worker", "--retention", "7d", "--lease-time", "2m"]))
    assert (settings["retention"], settings["lease_time"]) == (604800, 120)


def test_a_listen_setting_that_is_not_a_boolean_is_refused_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEDULER_LISTEN", "flase")
    result = run_cli(
        capsys, "--dsn", NEVER_CONNECTED_DSN, "worker", "--import", "tests.support.cli_tasks"
    )
    assert_one_line(result, USAGE, "$SCHEDULER_LISTEN must be true or false")
