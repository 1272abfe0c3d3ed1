"""A web dashboard for the scheduler (optional extra `dashboard`: pip install
'pgcadence[dashboard]').

    from scheduler.dashboard import create_app
    app.mount("/scheduler", create_app(pool, schema="scheduler", authorize=allow_staff))

Read-only unless `authorize` allows an action; see create_app() and the dashboard guide.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as missing:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"scheduler.dashboard needs the 'dashboard' extra ({missing.name} is missing):"
        " pip install 'pgcadence[dashboard]'"
    ) from missing

from scheduler.dashboard.app import create_app
from scheduler.dashboard.errors import DashboardInputError
from scheduler.dashboard.security import ACTIONS, Authorize, DashboardAction

__all__ = ["ACTIONS", "Authorize", "DashboardAction", "DashboardInputError", "create_app"]
