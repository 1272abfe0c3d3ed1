"""The dashboard as an ASGI application: server-rendered pages (Starlette routes, Jinja2
templates with autoescaping) and one JSON endpoint the overview polls. Mount it in your
own app, or serve it with `scheduler dashboard`."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import asyncpg
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scheduler.error_text import error_line
from scheduler.errors import SchedulerError
from scheduler.postgres.sql import validate_schema_name

from .data import LIST_STATUSES, DashboardData
from .errors import DashboardInputError
from .security import (
    ACTIONS,
    CSRF_COOKIE,
    CSRF_FIELD,
    Authorize,
    CsrfTokens,
    DashboardAction,
    is_allowed,
)

logger = logging.getLogger("scheduler.dashboard")

#: Rows per page of the job and schedule lists.
PAGE_SIZE = 50
#: Largest form body an action accepts (a token and a target id).
_MAX_FORM_BYTES = 16_384


def create_app(
    pool: asyncpg.Pool[Any],
    *,
    schema: str = "scheduler",
    authorize: Authorize | None = None,
    secret: bytes | str | None = None,
    refresh_seconds: float = 2.0,
    page_size: int = PAGE_SIZE,
) -> Starlette:
    """The dashboard of the scheduler tables in `schema`, read through `pool`.

    `authorize(request, action)` decides each action (cancel, retry, pause, resume); with
    none the dashboard is read-only: no action buttons, and every action is refused (403).
    `secret` signs the CSRF tokens; give the same one to every replica of your app behind
    a load balancer (default: a random one per process). The overview refreshes every
    `refresh_seconds` and its counts are read at most that often, however many browsers
    watch. Reading pages is not guarded: mount the app behind your own authentication.
    """
    schema = validate_schema_name(schema)
    if refresh_seconds <= 0 or not math.isfinite(refresh_seconds):
        raise DashboardInputError(f"refresh_seconds must be > 0, got {refresh_seconds}")
    if page_size < 1:
        raise DashboardInputError(f"page_size must be >= 1, got {page_size}")
    dashboard = _Dashboard(
        DashboardData(pool, schema, cache_seconds=refresh_seconds),
        authorize,
        CsrfTokens(secret),
        refresh_seconds,
        page_size,
    )
    return Starlette(
        routes=[
            Route("/", dashboard.overview, name="overview"),
            Route("/api/overview", dashboard.overview_json, name="overview_json"),
            Route("/jobs", dashboard.jobs, name="jobs"),
            Route("/jobs/{job_id:path}", dashboard.job, name="job"),
            Route("/schedules", dashboard.schedules, name="schedules"),
            Route("/workers", dashboard.workers, name="workers"),
            Route("/actions/{action}", dashboard.act, methods=["POST"], name="act"),
            Mount(
                "/static",
                StaticFiles(packages=[("scheduler.dashboard", "static")]),
                name="static",
            ),
        ]
    )


class _Dashboard:
    def __init__(
        self,
        data: DashboardData,
        authorize: Authorize | None,
        tokens: CsrfTokens,
        refresh_seconds: float,
        page_size: int,
    ) -> None:
        self.data = data
        self.authorize = authorize
        self.tokens = tokens
        self.refresh_seconds = refresh_seconds
        self.page_size = page_size
        self.templates = Environment(
            loader=PackageLoader("scheduler.dashboard", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            ago=_ago,
            when=_when,
            seconds=_seconds,
            summary=_summary,
            error_line=_error_line,
            quote=lambda v: quote(str(v), safe=""),
        )

    # -- pages ------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        overview = await self.data.overview()
        return self._render(request, "overview.html", "overview", overview=overview)

    async def overview_json(self, request: Request) -> Response:
        overview = await self.data.overview()
        return JSONResponse(overview.as_json(), headers={"Cache-Control": "no-store"})

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        job_id = params.get("id", "").strip()
        status = params.get("status") or "failed"
        task = params.get("task", "").strip() or None
        queue = params.get("queue", "").strip() or None
        try:
            if job_id:
                if await self.data.job_exists(job_id):
                    return RedirectResponse(self._job_url(request, job_id), status_code=303)
                page = None
            else:
                page = await self.data.jobs(
                    status, task=task, queue=queue, cursor=params.get("after"), limit=self.page_size
                )
        except DashboardInputError as exc:
            return self._error(request, 400, str(exc))
        filters = {"status": status, "task": task or "", "queue": queue or ""}
        next_url = None
        if page is not None and page.next_cursor is not None:
            query = {k: v for k, v in filters.items() if v} | {"after": page.next_cursor}
            next_url = f"{_base(request)}/jobs?{urlencode(query)}"
        first_url = f"{_base(request)}/jobs?{urlencode({k: v for k, v in filters.items() if v})}"
        return self._render(
            request,
            "jobs.html",
            "jobs",
            page=page,
            missing_id=job_id if page is None else None,
            filters=filters,
            statuses=LIST_STATUSES,
            next_url=next_url,
            first_url=first_url if params.get("after") else None,
            tab_query=urlencode({k: v for k, v in filters.items() if v and k != "status"}),
        )

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        found = await self.data.job(job_id)
        if found is None:
            return self._error(request, 404, f"no job {job_id!r} (unknown, or pruned)")
        job, attempts = found
        arguments = {"args": list(job.args), "kwargs": job.kwargs}
        return self._render(
            request,
            "job.html",
            "jobs",
            job=job,
            attempts=attempts,
            arguments=json.dumps(arguments, indent=2, default=str),
            result=json.dumps(job.result, indent=2, default=str),
        )

    async def schedules(self, request: Request) -> Response:
        after = request.query_params.get("after", "")
        rows, next_cursor = await self.data.schedules(after, self.page_size)
        next_url = None
        if next_cursor is not None:
            next_url = f"{_base(request)}/schedules?{urlencode({'after': next_cursor})}"
        return self._render(
            request,
            "schedules.html",
            "schedules",
            schedules=rows,
            next_url=next_url,
            first_url=f"{_base(request)}/schedules" if after else None,
        )

    async def workers(self, request: Request) -> Response:
        rows = await self.data.workers(500)
        return self._render(request, "workers.html", "workers", workers=rows)

    # -- actions ----------------------------------------------------------------------
    async def act(self, request: Request) -> Response:
        name = request.path_params["action"]
        if name not in ACTIONS:
            return self._error(request, 404, f"no action {name!r}")
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return self._error(request, 413, "the form is too large")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not self.tokens.matches(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return self._error(
                request,
                403,
                "this form's security token is missing or stale; reload the page and try again",
            )
        target = form.get("target", "")
        if not target:
            return self._error(request, 400, "the action names no job, queue or schedule")
        action = DashboardAction(name, target)
        if not await is_allowed(self.authorize, request, action):
            logger.warning("dashboard: refused %s of %r", name, target)
            return self._error(request, 403, "you are not allowed to do that here")
        try:
            message = await getattr(self.data, name)(target)
        except SchedulerError as exc:
            return self._error(request, 409, str(exc))
        logger.info("dashboard: %s", message)
        return RedirectResponse(self._after_action(request, action), status_code=303)

    def _after_action(self, request: Request, action: DashboardAction) -> str:
        if action.name.endswith("_job"):
            return self._job_url(request, action.target)
        if action.name.endswith("_schedule"):
            return f"{_base(request)}/schedules"
        return f"{_base(request)}/"

    # -- rendering --------------------------------------------------------------------
    def _job_url(self, request: Request, job_id: str) -> str:
        return f"{_base(request)}/jobs/{quote(job_id, safe='')}"

    def _render(
        self, request: Request, template: str, section: str, status_code: int = 200, **context: Any
    ) -> Response:
        token = request.cookies.get(CSRF_COOKIE)
        fresh = token is None or not self.tokens.is_valid(token)
        if token is None or fresh:
            token = self.tokens.new()
        html = self.templates.get_template(template).render(
            base=_base(request),
            section=section,
            csrf_field=CSRF_FIELD,
            csrf_token=token,
            can_act=self.authorize is not None,
            schema=self.data.schema,
            refresh_ms=int(self.refresh_seconds * 1000),
            **context,
        )
        response = HTMLResponse(
            html,
            status_code=status_code,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": (
                    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'"
                    " data:; form-action 'self'; frame-ancestors 'none'"
                ),
                "Referrer-Policy": "same-origin",
            },
        )
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path=_base(request) or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def _error(self, request: Request, status_code: int, message: str) -> Response:
        return self._render(
            request, "error.html", "", status_code=status_code, message=message, code=status_code
        )


def _base(request: Request) -> str:
    """Where the dashboard is mounted (empty at the root of its own server)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _error_line(row: Any) -> str:
    """A job's or an attempt's error for a list: its exception's type and message."""

    def get(name: str) -> Any:
        return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)

    text = get("last_error") if get("error") is None else get("error")
    if get("error_message") is None:
        return _summary(text)
    return error_line(get("error_type"), get("error_message"), text)


def _summary(error: str | None) -> str:
    """A traceback's last meaningful line (the exception), skipping the caret lines newer
    Pythons add under the failing expression."""
    for line in reversed((error or "").strip().splitlines()):
        if line.strip() and set(line.strip()) - set("^~ "):
            return line.strip()
    return ""


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = abs(value)
    if value < 1:
        return "0s"
    if value < 90:
        return f"{value:.0f}s"
    if value < 5400:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.0f}h"
    return f"{value / 86400:.0f}d"


def _ago(value: datetime | None) -> str:
    """'12s ago' / 'in 3m', from this server's clock."""
    if value is None:
        return "-"
    try:
        delta = (value - datetime.now(timezone.utc)).total_seconds()
    except OverflowError:
        return "-"
    return f"in {_seconds(delta)}" if delta > 0.5 else f"{_seconds(delta)} ago"


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
