"""Observability settings: what Scheduler(...) refuses, what it switches on, and the extras
explaining themselves, all without a database (middleware and events on a running
scheduler: tests/integration/test_observability.py)."""

from __future__ import annotations

import pytest

from tests.support import observed_jobs
from tests.support.unconnected import unconnected_scheduler


def test_bad_observability_settings_are_refused() -> None:
    from scheduler import ConfigurationError

    with pytest.raises(ConfigurationError, match="event_handlers"):
        unconnected_scheduler(event_handlers=print)
    with pytest.raises(ConfigurationError, match="Extension objects"):
        unconnected_scheduler(extensions=[object()])
    with pytest.raises(ConfigurationError, match="middleware"):
        unconnected_scheduler(middleware=[1])


def test_the_core_imports_and_the_extras_explain_themselves_without_their_packages() -> None:
    import subprocess
    import sys

    from tests.support.processes import ROOT

    script = """
import sys
for name in ("prometheus_client", "opentelemetry"):
    sys.modules[name] = None  # as if not installed
import scheduler, scheduler.metrics, scheduler.tracing
from scheduler.metrics import PrometheusMetrics
from scheduler.tracing import OpenTelemetryTracing
for extension in (PrometheusMetrics, OpenTelemetryTracing):
    try:
        extension()
    except scheduler.ConfigurationError as exc:
        print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'pgcadence[prometheus]'" in done.stdout
    assert "pip install 'pgcadence[otel]'" in done.stdout


def test_nothing_configured_means_nothing_in_the_runners_way() -> None:
    from scheduler.observing import Observability

    assert not Observability().active
    scheduler = unconnected_scheduler()
    assert not scheduler._observability.active
    assert unconnected_scheduler(event_handlers=[print])._observability.active
    assert unconnected_scheduler(middleware=[observed_jobs.open_session])._observability.active
