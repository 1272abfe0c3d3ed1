"""The dashboard is an optional extra: the core and the CLI import without it, and
importing the dashboard without it says which extra to install."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT

WITHOUT_EXTRA = """
import sys
for name in ("starlette", "jinja2", "uvicorn"):
    sys.modules[name] = None  # as if not installed
import scheduler, scheduler.cli
assert not any(m.startswith("scheduler.dashboard") for m in sys.modules)
try:
    import scheduler.dashboard
except ImportError as exc:
    print(exc)
"""


def test_the_core_imports_without_the_dashboard_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'pgcadence[dashboard]'" in done.stdout
