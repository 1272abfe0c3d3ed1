"""Prometheus metrics after a known workload, scraped through the ASGI endpoint helper and
the standalone exporter (issue 14, item 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import anyio
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from scheduler import EventKind, JobEvent, Scheduler
from scheduler.metrics import PrometheusMetrics
from tests.conftest import SchedulerFactory
from tests.support import observed_jobs
from tests.support.db import TEST_DSN, wait_until
from tests.support.processes import ROOT, free_port

SUCCEED = "tests.support.observed_jobs:succeed"
FAIL = "tests.support.observed_jobs:fail"
FAIL_FIRST = "tests.support.observed_jobs:fail_first"


async def scrape(app: Any, path: str = "/") -> str:
    """GET through an ASGI app, as a server would call it."""
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 200
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def test_metrics_after_a_known_workload(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    metrics = PrometheusMetrics(queue_depth_interval=1.0)
    endings: list[JobEvent] = []
    key = uuid.uuid4().hex
    async with make_scheduler(
        extensions=[metrics],
        event_handlers=[lambda e: endings.append(e) if e.ends_attempt else None],
        max_concurrent_jobs=3,
        queues=["default"],
    ) as scheduler:
        for _ in range(3):
            await scheduler.schedule(observed_jobs.succeed, args=(key,))
        await scheduler.schedule(observed_jobs.fail, args=(key,))
        await scheduler.schedule(observed_jobs.fail_first, args=(key,), max_retries=1)
        # Two due jobs in a queue no replica works: the backlog the gauges must show.
        for _ in range(2):
            await scheduler.schedule(observed_jobs.succeed, args=(key,), queue="parked")

        async def ran_all() -> bool:
            return len(endings) == 6  # 3 + 1 + 2 attempts of fail_first

        await wait_until(ran_all, message="six attempts to end")
        app = metrics.asgi_app()

        async def backlog_read() -> str | None:
            text = await scrape(app)
            return text if value(text, "scheduler_queue_due_jobs", queue="parked") == 2 else None

        read = await wait_until(backlog_read, message="the queue-depth reader's first reading")
        assert read is not None
        text = read

    def attempts(task: str, outcome: str) -> float | None:
        return value(text, "scheduler_attempts_total", task=task, queue="default", outcome=outcome)

    assert attempts(SUCCEED, "succeeded") == 3
    assert attempts(FAIL, "failed") == 1
    assert attempts(FAIL_FIRST, "retried") == 1
    assert attempts(FAIL_FIRST, "succeeded") == 1
    assert value(text, "scheduler_jobs_scheduled_total", task=SUCCEED, queue="default") == 3
    assert value(text, "scheduler_jobs_scheduled_total", task=SUCCEED, queue="parked") == 2
    assert value(text, "scheduler_job_run_seconds_count", task=SUCCEED, queue="default") == 3
    assert value(text, "scheduler_job_run_seconds_count", task=FAIL_FIRST, queue="default") == 2
    assert value(text, "scheduler_job_start_lag_seconds_count", task=SUCCEED, queue="default") == 3
    lag_sum = value(text, "scheduler_job_start_lag_seconds_sum", task=SUCCEED, queue="default")
    assert lag_sum is not None and lag_sum >= 0
    # Nothing runs now, and every slot is free.
    assert value(text, "scheduler_running_jobs") == 0
    assert value(text, "scheduler_free_slots") == 3
    age = value(text, "scheduler_queue_oldest_due_age_seconds", queue="parked")
    assert age is not None and age >= 0
    assert not value(text, "scheduler_queue_due_jobs", queue="default")


async def test_the_gauges_read_the_replica_while_jobs_run(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    metrics = PrometheusMetrics(queue_depth_interval=None)
    started: list[str] = []
    key = uuid.uuid4().hex
    async with make_scheduler(
        extensions=[metrics],
        event_handlers=[
            lambda e: started.append(e.job_id) if e.kind is EventKind.STARTED else None
        ],
        max_concurrent_jobs=4,
    ) as scheduler:
        ids = [await scheduler.schedule(observed_jobs.wait_for_cancel, args=(key,)) for _ in "ab"]

        async def both_started() -> bool:
            return set(started) == set(ids)

        await wait_until(both_started, message="both jobs to start")
        text = await scrape(metrics.asgi_app())
        assert value(text, "scheduler_running_jobs") == 2
        assert value(text, "scheduler_free_slots") == 2
        for job_id in ids:
            assert await scheduler.cancel_job(job_id)
    text = await scrape(metrics.asgi_app())
    for job_id in ids:
        assert job_id in started
    assert (
        value(
            text,
            "scheduler_attempts_total",
            task="tests.support.observed_jobs:wait_for_cancel",
            queue="default",
            outcome="cancelled",
        )
        == 2
    )


async def test_the_standalone_exporter_serves_the_same_metrics(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    metrics = PrometheusMetrics(queue_depth_interval=None)
    port = free_port()
    stop = metrics.serve(port)
    try:
        async with make_scheduler(extensions=[metrics]) as scheduler:
            job_id = await scheduler.schedule(observed_jobs.succeed, args=(uuid.uuid4().hex,))
            await scheduler.wait_for_job(job_id, timeout=15)

            def get() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body: bytes = r.read()
                return body.decode()

            async def counted() -> str | None:
                text = await anyio.to_thread.run_sync(get)
                found = value(
                    text,
                    "scheduler_attempts_total",
                    task=SUCCEED,
                    queue="default",
                    outcome="succeeded",
                )
                return text if found == 1 else None

            await wait_until(counted, message="the exporter to count the attempt")
    finally:
        stop()


async def test_a_cli_worker_serves_metrics_on_its_metrics_port(
    pool: asyncpg.Pool, migrated: str
) -> None:
    port = free_port()
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
            "tests.support.observed_jobs",
            "--metrics-port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stdout is not None
        assert f"127.0.0.1:{port}/metrics" in worker.stdout.readline()
        assert "running" in worker.stdout.readline()
        producer = Scheduler(pool, schema=migrated)
        job_id = await producer.schedule(SUCCEED, args=("cli",))
        await producer.wait_for_job(job_id, timeout=20)

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                body: bytes = r.read()
            return body.decode()

        async def counted() -> bool:
            text = await anyio.to_thread.run_sync(get)
            labels = {"task": SUCCEED, "queue": "default", "outcome": "succeeded"}
            return value(text, "scheduler_attempts_total", **labels) == 1

        await wait_until(counted, message="the worker's exporter to count the attempt")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


async def test_scrapes_and_jobs_read_nothing_from_the_database(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    metrics = PrometheusMetrics(queue_depth_interval=60.0)
    scheduler = make_scheduler(extensions=[metrics])
    reads: list[int] = []
    read_depths = scheduler._store.queue_depths

    async def counted() -> Any:
        reads.append(1)
        return await read_depths()

    scheduler._store.queue_depths = counted  # type: ignore[method-assign]
    async with scheduler:
        await wait_until(lambda: _holds(bool(reads)), message="the first queue-depth read")
        key = uuid.uuid4().hex
        for _ in range(5):
            await scheduler.wait_for_job(
                await scheduler.schedule(observed_jobs.succeed, args=(key,)), timeout=15
            )
        for _ in range(20):
            await scrape(metrics.asgi_app())
    # One read when the replica started; the next is an interval away.
    assert len(reads) == 1


async def _holds(value: bool) -> bool:
    return value


async def test_the_queue_depth_gauges_on_their_default_interval(
    migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """The reader on its default settings (every 5 s): short test intervals hide start-up
    bugs, so one test waits for a reading at the default pace."""
    metrics = PrometheusMetrics()
    key = uuid.uuid4().hex
    async with make_scheduler(extensions=[metrics], queues=["default"]) as scheduler:
        for _ in range(3):
            await scheduler.schedule(observed_jobs.succeed, args=(key,), queue="parked")
        app = metrics.asgi_app()

        async def three_parked() -> bool:
            text = await scrape(app)
            return value(text, "scheduler_queue_due_jobs", queue="parked") == 3

        await wait_until(three_parked, timeout=20, message="a reading at the default interval")
