"""Built-in HTTP jobs (issue 15): a request described by JSON arguments, sent only to hosts
on the replica's allowlist, retried by the job's policy, with the status and a bounded body
as the result. Against a real ASGI server under uvicorn on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import asyncpg
import pytest

from scheduler import (
    HTTP_TASK,
    AttemptOutcome,
    CronTrigger,
    JobStatus,
    RetryBackoff,
    http_request,
)
from scheduler.postgres.sql import quote_identifier
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.db import holds, unique_schema, wait_until
from tests.support.http_server import LocalServer, serving

LOCAL = ["127.0.0.1"]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with serving() as running:
        yield running


async def test_an_http_job_sends_its_request_and_stores_status_and_body(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(
        server.url("/echo"), method="POST", json={"answer": 42}, headers={"X-Test": "yes"}
    )
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request), timeout=30
        )
    assert job.status is JobStatus.SUCCEEDED, job.last_error
    assert job.result["status"] == 200 and job.result["body_truncated"] is False
    echo = json.loads(job.result["body"])
    assert echo == {
        "method": "POST",
        "body": '{"answer": 42}',
        "x-test": "yes",
        "content-type": "application/json",
    }


async def test_a_500_is_retried_with_the_jobs_backoff_until_it_succeeds(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    backoff = RetryBackoff(base=0.4, maximum=0.4, jitter=False)
    request = http_request(server.url("/flaky?key=a&fail=2"))
    async with make_scheduler(http_allowed_hosts=LOCAL, retry_backoff=backoff) as scheduler:
        job_id = await scheduler.schedule(HTTP_TASK, kwargs=request, max_retries=3)
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED, job.last_error
    assert job.result["body"] == "success after 2 failures"
    outcomes = [a.outcome for a in await scheduler.get_attempts(job_id)]
    assert outcomes == [AttemptOutcome.FAILED, AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED]
    sent = server.received("/flaky")
    assert len(sent) == 3
    # Each retry waited for its backoff (a lower bound: a slow machine only waits longer).
    assert all(later.at - earlier.at >= 0.4 for earlier, later in itertools.pairwise(sent))


async def test_a_500_past_the_retries_fails_with_the_status_in_the_error(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(server.url("/flaky?key=b&fail=9"))
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request, max_retries=1), timeout=30
        )
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "answered 500" in job.last_error and "failure 2" in job.last_error


async def test_an_http_request_that_takes_too_long_times_out(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(server.url("/slow?seconds=30"), timeout=0.3)
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request), timeout=30
        )
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "ReadTimeout" in job.last_error


async def test_the_jobs_own_timeout_also_stops_an_http_job(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(server.url("/slow?seconds=30"))
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job_id = await scheduler.schedule(HTTP_TASK, kwargs=request, timeout=0.3)
        job = await scheduler.wait_for_job(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    [attempt] = await scheduler.get_attempts(job_id)
    assert attempt.outcome is AttemptOutcome.TIMED_OUT


async def test_a_host_outside_the_allowlist_is_refused_without_a_request(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    # "localhost" reaches the same server: had anything been sent, the server would know.
    request = http_request(server.url("/echo", host="localhost"))
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request), timeout=30
        )
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "refused to call 'localhost': not in http_allowed_hosts (127.0.0.1)" in job.last_error
    assert server.requests == []


async def test_a_redirect_to_a_host_outside_the_allowlist_is_refused_at_the_hop(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    target = server.url("/echo", host="localhost")
    request = http_request(server.url(f"/redirect?to={target}"), follow_redirects=True)
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request), timeout=30
        )
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "refused to call 'localhost'" in job.last_error
    assert [r.path for r in server.requests] == ["/redirect"]


async def test_a_replica_without_an_allowlist_never_claims_http_jobs(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    """Off by default: the built-in task is not even registered, so the job waits for a
    replica that allows HTTP instead of failing on this one."""
    key = unique_schema("k")
    async with make_scheduler() as scheduler:
        http_job = await scheduler.schedule(HTTP_TASK, kwargs=http_request(server.url("/echo")))
        later = await scheduler.schedule(jobs.record, args=(key,))
        await wait_until(lambda: holds(jobs.calls(key)))
        job = await scheduler.get_job(http_job)
        assert job is not None and job.status is JobStatus.PENDING
        assert (await scheduler.get_job(later)) is not None
    assert server.requests == []
    async with make_scheduler(http_allowed_hosts=LOCAL) as allowing:
        done = await allowing.wait_for_job(http_job, timeout=30)
    assert done.status is JobStatus.SUCCEEDED


async def test_the_body_kept_in_the_result_is_bounded(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(server.url("/big"), max_body_bytes=100)
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs=request), timeout=30
        )
    assert job.result == {"status": 200, "body": "x" * 100, "body_truncated": True}


async def test_a_cron_schedule_of_an_http_job_from_python(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    request = http_request(server.url("/echo?from=python"))
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        await scheduler.add_schedule(
            HTTP_TASK, CronTrigger("* * * * * *"), schedule_id="hook", kwargs=request
        )
        await wait_until(
            lambda: holds(len(server.received("/echo")) >= 2), message="two fired requests"
        )
    assert all(r.query == {"from": "python"} for r in server.received("/echo"))


async def test_a_cron_schedule_of_an_http_job_from_sql(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer, pool: asyncpg.Pool
) -> None:
    kwargs = http_request(server.url("/echo?from=sql"), method="POST", body="ping")
    await pool.execute(
        f"SELECT {quote_identifier(migrated)}.add_schedule('sql-hook', $1,"
        " cron => '* * * * * *', kwargs => $2::jsonb, max_retries => 2)",
        HTTP_TASK,
        json.dumps(kwargs),
    )
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        await wait_until(
            lambda: holds(len(server.received("/echo")) >= 2), message="two fired requests"
        )
        schedule = await scheduler.get_schedule("sql-hook")
    assert schedule is not None and schedule.task_name == HTTP_TASK
    assert all(r.query == {"from": "sql"} and r.body == b"ping" for r in server.received("/echo"))


async def test_bad_arguments_from_a_row_fail_the_attempt_with_what_is_wrong(
    migrated: str, make_scheduler: SchedulerFactory, server: LocalServer
) -> None:
    async with make_scheduler(http_allowed_hosts=LOCAL) as scheduler:
        job = await scheduler.wait_for_job(
            await scheduler.schedule(HTTP_TASK, kwargs={"url": "file:///etc/passwd"}),
            timeout=30,
        )
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert "url must be an http:// or https:// URL" in job.last_error
    assert server.requests == []
