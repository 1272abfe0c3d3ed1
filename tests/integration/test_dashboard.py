"""The web dashboard through its ASGI interface (httpx's ASGI transport, a real database):
every page, the actions, authorization (read-only by default), CSRF and escaping."""

from __future__ import annotations

import html
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from markupsafe import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from scheduler import IntervalTrigger, JobStatus
from scheduler.dashboard import DashboardAction, create_app
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import TEST_DSN, has_status, holds, wait_until
from tests.support.processes import ROOT

EVIL_ID = '<script>alert("id")</script>'
EVIL_ERROR = "Traceback...\nValueError: <script>alert('error')</script>"

ClientFactory = Callable[..., httpx.AsyncClient]


def allow_all(request: Request, action: DashboardAction) -> bool:
    return True


@pytest.fixture
async def client(pool: asyncpg.Pool, migrated: str) -> AsyncIterator[ClientFactory]:
    """Clients of dashboards on the test schema (create_app keyword arguments)."""
    opened: list[httpx.AsyncClient] = []

    def factory(**options: Any) -> httpx.AsyncClient:
        app = options.pop("app", None) or create_app(pool, schema=migrated, **options)
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        opened.append(made)
        return made

    try:
        yield factory
    finally:
        for made in opened:
            await made.aclose()


async def insert_job(
    pool: asyncpg.Pool, schema: str, job_id: str, status: str, **extra: str
) -> None:
    """A job row as plain SQL writes it (a finished one finished now)."""
    columns = {"job_id": job_id, "task_name": "tests.support.jobs:record", "status": status}
    columns |= extra
    names = ", ".join(columns)
    values = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    if status in ("succeeded", "failed", "cancelled"):
        names, values = f"{names}, finished_at", f"{values}, now()"
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs ({names}) VALUES ({values})",
        *columns.values(),
    )


async def csrf_token(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no action form"
    return found[1]


async def post_action(
    client: httpx.AsyncClient, action: str, target: str, token: str | None, prefix: str = ""
) -> httpx.Response:
    form = {"target": target} | ({} if token is None else {"csrf_token": token})
    return await client.post(f"{prefix}/actions/{action}", data=form)


async def status_of(pool: asyncpg.Pool, schema: str, job_id: str) -> str:
    status: str = await pool.fetchval(
        f"SELECT status FROM {quote_identifier(schema)}.jobs WHERE job_id = $1", job_id
    )
    return status


async def test_every_page_shows_the_live_state(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, client: ClientFactory
) -> None:
    scheduler = make_scheduler(queues=["default", "mail"])
    failed = await scheduler.schedule(jobs.always_fail, args=("page-fail",), queue="mail")
    running = await scheduler.schedule(jobs.wait_forever, args=("page-run",))
    later = await scheduler.schedule(jobs.record, args=("later",), delay=3600)
    schedule_id = await scheduler.add_schedule(
        jobs.record, IntervalTrigger(hours=1), schedule_id="hourly-report", args=("s",)
    )
    await scheduler.start()
    await wait_until(lambda: has_status(scheduler, failed, JobStatus.FAILED), message="failure")
    await wait_until(lambda: has_status(scheduler, running, JobStatus.RUNNING), message="start")
    dashboard = client()

    overview = await dashboard.get("/")
    assert overview.status_code == 200
    assert 'data-row="mail"' in overview.text and "tests.support.jobs:always_fail" in overview.text
    counts = (await dashboard.get("/api/overview")).json()
    by_queue = {q["name"]: q for q in counts["queues"]}
    assert by_queue["mail"]["failed_hour"] == 1
    assert by_queue["default"]["running"] == 1
    assert by_queue["default"]["future"] >= 1  # the delayed job (and the schedule's slot)
    assert counts["live_workers"] == 1

    failed_list = await dashboard.get("/jobs", params={"status": "failed"})
    assert failed in failed_list.text and "this job always fails" in failed_list.text
    running_list = await dashboard.get("/jobs", params={"status": "running"})
    assert running in running_list.text and failed not in running_list.text
    pending_list = await dashboard.get("/jobs", params={"status": "pending", "task": "x"})
    assert later not in pending_list.text  # filtered out by task
    pending_list = await dashboard.get(
        "/jobs", params={"status": "pending", "task": "tests.support.jobs:record"}
    )
    assert later in pending_list.text
    for status in ("blocked", "cancelled", "succeeded"):
        assert (await dashboard.get("/jobs", params={"status": status})).status_code == 200

    detail = await dashboard.get(f"/jobs/{failed}")
    assert detail.status_code == 200
    assert "page-fail" in detail.text  # arguments
    assert 'id="attempts"' in detail.text and "ValueError" in detail.text
    assert (
        (await dashboard.get("/jobs", params={"id": failed}))
        .headers["location"]
        .endswith(f"/jobs/{failed}")
    )
    assert "No job with id" in (await dashboard.get("/jobs", params={"id": "nope"})).text
    assert (await dashboard.get("/jobs/nope")).status_code == 404

    schedules = await dashboard.get("/schedules")
    assert schedule_id in schedules.text and "IntervalTrigger" in schedules.text
    workers = await dashboard.get("/workers")
    assert str(scheduler.worker_id)[:12] in workers.text and running[:17] in workers.text
    assert ">live<" in workers.text


async def test_a_dashboard_without_authorize_is_read_only(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    await insert_job(pool, migrated, "ro-failed", "failed", last_error="boom")
    dashboard = client()  # no authorize hook
    for path in ("/", "/jobs", "/jobs/ro-failed", "/schedules"):
        page = await dashboard.get(path)
        assert "data-action=" not in page.text, path
        assert "read-only" in page.text
    # Even a request carrying a valid token is refused: there is no one to allow it.
    token = dashboard.cookies.get("scheduler_dashboard_csrf") or ""
    assert token
    refused = await post_action(dashboard, "retry_job", "ro-failed", token)
    assert refused.status_code == 403
    assert await status_of(pool, migrated, "ro-failed") == "failed"


async def test_the_authorize_hook_decides_each_action(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    await insert_job(pool, migrated, "hook-1", "failed")
    await insert_job(pool, migrated, "hook-2", "failed")
    asked: list[DashboardAction] = []

    async def only_hook_1(request: Request, action: DashboardAction) -> bool:
        asked.append(action)
        return action.target == "hook-1"

    dashboard = client(authorize=only_hook_1)
    token = await csrf_token(dashboard, "/jobs/hook-1")
    assert (await post_action(dashboard, "retry_job", "hook-2", token)).status_code == 403
    assert await status_of(pool, migrated, "hook-2") == "failed"
    allowed = await post_action(dashboard, "retry_job", "hook-1", token)
    assert allowed.status_code == 303
    assert allowed.headers["location"] == "/jobs/hook-1"
    assert await status_of(pool, migrated, "hook-1") == "pending"
    assert asked == [DashboardAction("retry_job", "hook-2"), DashboardAction("retry_job", "hook-1")]


async def test_actions_without_a_valid_csrf_token_are_refused(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    await insert_job(pool, migrated, "csrf-job", "failed")
    dashboard = client(authorize=allow_all, secret="s3cret")
    token = await csrf_token(dashboard, "/jobs/csrf-job")
    nonce = token.split(".")[0]
    forged = f"{nonce}.{'0' * 64}"
    other_app = client(authorize=allow_all, secret="another")
    foreign = await csrf_token(other_app, "/jobs/csrf-job")

    assert (await post_action(dashboard, "retry_job", "csrf-job", None)).status_code == 403
    assert (await post_action(dashboard, "retry_job", "csrf-job", "x.y")).status_code == 403
    assert (await post_action(dashboard, "retry_job", "csrf-job", forged)).status_code == 403
    # A token signed with another secret, sent as both cookie and field, is still refused.
    dashboard.cookies.set("scheduler_dashboard_csrf", foreign)
    assert (await post_action(dashboard, "retry_job", "csrf-job", foreign)).status_code == 403
    # No cookie at all (a cross-site form cannot read ours to copy it into the field).
    dashboard.cookies.clear()
    assert (await post_action(dashboard, "retry_job", "csrf-job", token)).status_code == 403
    assert await status_of(pool, migrated, "csrf-job") == "failed"

    dashboard.cookies.set("scheduler_dashboard_csrf", token)
    assert (await post_action(dashboard, "retry_job", "csrf-job", token)).status_code == 303
    assert await status_of(pool, migrated, "csrf-job") == "pending"


async def test_user_data_is_shown_as_text_never_as_markup(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    await insert_job(
        pool,
        migrated,
        EVIL_ID,
        "failed",
        last_error=EVIL_ERROR,
        queue="q<i>",
        args='["<img src=x onerror=alert(1)>"]',
    )
    dashboard = client(authorize=allow_all)
    pages = [
        await dashboard.get("/jobs", params={"status": "failed"}),
        await dashboard.get(f"/jobs/{quote(EVIL_ID, safe='')}"),
        await dashboard.get("/"),
        await dashboard.get("/jobs", params={"id": "<b>missing</b>"}),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert "<img" not in page.text and "<i>" not in page.text and "<b>missing" not in page.text
    assert str(escape(EVIL_ID)) in pages[0].text  # &lt;script&gt;alert(&#34;id&#34;)...
    assert "&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in pages[1].text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1].text
    # The retry form carries the id as an attribute value, escaped, and acts on the real id.
    token = await csrf_token(dashboard, f"/jobs/{quote(EVIL_ID, safe='')}")
    done = await post_action(dashboard, "retry_job", EVIL_ID, token)
    assert done.status_code == 303
    assert done.headers["location"] == f"/jobs/{quote(EVIL_ID, safe='')}"
    assert await status_of(pool, migrated, EVIL_ID) == "pending"


async def test_actions_change_jobs_queues_and_schedules(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, client: ClientFactory
) -> None:
    scheduler = make_scheduler()
    pending = await scheduler.schedule(jobs.record, args=("act",), delay=3600)
    schedule_id = await scheduler.add_schedule(
        jobs.record, IntervalTrigger(minutes=5), schedule_id="every-5", args=("s",)
    )
    await insert_job(pool, migrated, "act-done", "succeeded")
    dashboard = client(authorize=allow_all)
    token = await csrf_token(dashboard)

    assert (await post_action(dashboard, "cancel_job", pending, token)).status_code == 303
    assert await status_of(pool, migrated, pending) == "cancelled"
    assert (await post_action(dashboard, "retry_job", pending, token)).status_code == 303
    assert await status_of(pool, migrated, pending) == "pending"

    refused = await post_action(dashboard, "retry_job", "act-done", token)
    assert refused.status_code == 409 and "only failed or cancelled" in refused.text

    assert (await post_action(dashboard, "pause_queue", "default", token)).status_code == 303
    assert [q.paused for q in await scheduler.queue_stats() if q.queue == "default"] == [True]
    assert "Resume" in (await dashboard.get("/")).text
    assert (await post_action(dashboard, "resume_queue", "default", token)).status_code == 303
    assert [q.paused for q in await scheduler.queue_stats() if q.queue == "default"] == [False]
    bad_queue = await post_action(dashboard, "pause_queue", "no spaces", token)
    assert bad_queue.status_code == 409

    assert (await post_action(dashboard, "pause_schedule", schedule_id, token)).status_code == 303
    stored = await scheduler.get_schedule(schedule_id)
    assert stored is not None and stored.paused
    assert 'data-action="resume_schedule"' in (await dashboard.get("/schedules")).text
    assert (await post_action(dashboard, "resume_schedule", schedule_id, token)).status_code == 303
    stored = await scheduler.get_schedule(schedule_id)
    assert stored is not None and not stored.paused
    assert (await post_action(dashboard, "pause_schedule", "nope", token)).status_code == 409
    assert (await post_action(dashboard, "drop_table", "jobs", token)).status_code == 404


async def test_cancelling_a_running_job_reaches_the_replica_running_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory, client: ClientFactory
) -> None:
    """The dashboard holds no Scheduler: the request goes through the database, whose
    NOTIFY reaches the replica that runs the job."""
    replica = make_scheduler()
    await replica.start()
    job_id = await replica.schedule(jobs.wait_forever, args=("dash-cancel",))
    await wait_until(lambda: has_status(replica, job_id, JobStatus.RUNNING), message="start")
    dashboard = client(authorize=allow_all)
    token = await csrf_token(dashboard, f"/jobs/{job_id}")
    assert (await post_action(dashboard, "cancel_job", job_id, token)).status_code == 303
    await wait_until(lambda: has_status(replica, job_id, JobStatus.CANCELLED), message="cancel")
    assert [c["event"] for c in jobs.CALLS["dash-cancel"]] == ["started", "interrupted"]


async def test_job_lists_page_by_keyset_without_gaps_or_repeats(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    table = f"{quote_identifier(migrated)}.jobs"
    await pool.execute(
        f"INSERT INTO {table} (job_id, task_name, status, finished_at, updated_at)"
        " SELECT 'p-' || lpad(n::text, 3, '0'), 't', 'failed', now(),"
        "        now() - (n % 7) * interval '1 second'"  # ties on updated_at: id breaks them
        " FROM generate_series(1, 53) AS n"
    )
    dashboard = client(page_size=10)
    seen: list[str] = []
    url: str | None = "/jobs?status=failed"
    while url:
        page = await dashboard.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<td class="id"><a href="/jobs/(p-\d+)">', page.text)
        found = re.search(r'<a class="button quiet" href="([^"]+)" rel="next">', page.text)
        url = html.unescape(found[1]) if found else None
    assert sorted(seen) == [f"p-{n:03d}" for n in range(1, 54)]
    assert len(seen) == len(set(seen))
    stamps = await pool.fetch(f"SELECT job_id, updated_at FROM {table}")
    order = sorted(stamps, key=lambda r: (r["updated_at"], r["job_id"]), reverse=True)
    assert seen == [r["job_id"] for r in order]

    for bad in ("nonsense", '["x"]', '["not a time", "p-001"]'):
        refused = await dashboard.get("/jobs", params={"status": "failed", "after": bad})
        assert refused.status_code == 400 and "cursor is not valid" in refused.text
    assert (await dashboard.get("/jobs", params={"status": "weird"})).status_code == 400


async def test_mounted_in_an_application_links_stay_under_its_prefix(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    await insert_job(pool, migrated, "mounted-job", "failed")
    inner = create_app(pool, schema=migrated, authorize=allow_all, refresh_seconds=1.0)
    dashboard = client(app=Starlette(routes=[Mount("/ops/scheduler", app=inner)]))
    page = await dashboard.get("/ops/scheduler/jobs")
    assert page.status_code == 200
    assert 'href="/ops/scheduler/jobs/mounted-job"' in page.text
    assert 'href="/ops/scheduler/static/dashboard.css"' in page.text
    assert "Path=/ops/scheduler" in page.headers["set-cookie"]
    assert (await dashboard.get("/ops/scheduler/static/dashboard.js")).status_code == 200
    token = await csrf_token(dashboard, "/ops/scheduler/jobs/mounted-job")
    done = await post_action(dashboard, "retry_job", "mounted-job", token, "/ops/scheduler")
    assert done.headers["location"] == "/ops/scheduler/jobs/mounted-job"


async def test_the_cli_serves_a_read_only_dashboard_until_interrupted(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await insert_job(pool, migrated, "cli-failed", "failed", last_error="boom")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "scheduler", "--dsn", TEST_DSN, "--schema", migrated]
    server = subprocess.Popen(
        [*command, "dashboard", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "read-only" in server.stdout.readline()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def page() -> httpx.Response | None:
                try:
                    return await http.get("/jobs/cli-failed")
                except httpx.TransportError:
                    return None

            shown = await wait_until(page, message="the dashboard to answer")
            assert shown is not None
            assert shown.status_code == 200 and "boom" in shown.text
            assert "data-action=" not in shown.text
            token = http.cookies.get("scheduler_dashboard_csrf")
            refused = await http.post(
                "/actions/retry_job", data={"target": "cli-failed", "csrf_token": token or ""}
            )
            assert refused.status_code == 403
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert await holds(await status_of(pool, migrated, "cli-failed") == "failed")


async def test_the_overview_shows_why_a_queues_limits_are_not_enforced(
    pool: asyncpg.Pool, migrated: str, client: ClientFactory
) -> None:
    """Issue 19: a limit row out of bounds (by hand, or from before migration 0011)
    pauses its queue's jobs; the overview says so and why."""
    q = quote_identifier(migrated)
    await pool.execute(
        f"INSERT INTO {q}.limits (scope, name, kind, settings) VALUES ('queue', 'mail', 'rate',"
        """ '{"rate_limit": 5, "rate_period": 1e-310, "rate_burst": 1}')"""
    )
    await pool.execute(f"SELECT {q}.set_queue_limits('ok', concurrency_limit => 2)")
    dashboard = client()
    by_queue = {q["name"]: q for q in (await dashboard.get("/api/overview")).json()["queues"]}
    assert "rate_period must be seconds" in by_queue["mail"]["problem"]
    assert by_queue["ok"]["problem"] is None
    overview = await dashboard.get("/")
    assert "limits not enforced, jobs wait: rate_period must be seconds" in overview.text
