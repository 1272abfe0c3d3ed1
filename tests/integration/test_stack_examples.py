"""The FastAPI, Django and pytest examples run and verify themselves against the real
database (each on the test's schema; their `--check` modes assert and exit non-zero)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.db import TEST_DSN
from tests.support.processes import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["examples/fastapi_app.py", "--check"],
        ["examples/django_app/check.py"],
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_with_scheduler.py"],
    ],
    ids=["fastapi", "django", "pytest"],
)
def test_the_example_checks_itself(command: list[str], schema: str) -> None:
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "SCHEDULER_DSN": TEST_DSN, "SCHEDULER_SCHEMA": schema},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "example OK" in result.stdout or "2 passed" in result.stdout
