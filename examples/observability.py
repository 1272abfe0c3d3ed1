"""Watching jobs: a middleware, an event handler, Prometheus metrics and OpenTelemetry
tracing on one scheduler (needs `pip install 'pgcadence[prometheus,otel]'`).

    python examples/observability.py

Runs a few jobs, then prints the events seen, the spans of one traced request, and the
attempt counters as a Prometheus scrape shows them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import urllib.request
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scheduler import AttemptInfo, CallNext, EventKind, JobEvent, Scheduler, task
from scheduler.metrics import PrometheusMetrics
from scheduler.tracing import OpenTelemetryTracing

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
log = logging.getLogger("example")


@task(max_retries=1)
async def resize_image(name: str) -> str:
    with trace.get_tracer("example").start_as_current_span("resize"):
        await asyncio.sleep(0.01)
    if name.startswith("broken"):
        raise ValueError(f"cannot read {name}")
    return f"{name} resized"


async def timing(attempt: AttemptInfo, call_next: CallNext) -> Any:
    """Middleware: wraps every attempt; what it returns is the attempt's result."""
    started = time.perf_counter()
    try:
        return await call_next()
    finally:
        elapsed = time.perf_counter() - started
        log.info("%s attempt %d took %.3fs", attempt.task_name, attempt.attempt, elapsed)


seen: list[JobEvent] = []
#: Three jobs, one of which fails twice (one retry): four attempts end.
all_attempts_ended = asyncio.Event()


def on_event(event: JobEvent) -> None:
    """An event handler: called in the event loop, so it must not block."""
    if event.kind is not EventKind.STARTED:
        seen.append(event)
    if sum(e.ends_attempt for e in seen) == 4:
        all_attempts_ended.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


async def main() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics = PrometheusMetrics()
    port = free_port()
    stop_exporter = metrics.serve(port)  # http://127.0.0.1:<port>/metrics
    pool = await asyncpg.create_pool(DSN)
    try:
        async with Scheduler(
            pool,
            middleware=[timing],
            event_handlers=[on_event],
            extensions=[metrics, OpenTelemetryTracing()],
        ) as scheduler:
            with trace.get_tracer("example").start_as_current_span("upload request"):
                ids = [
                    await scheduler.schedule(resize_image, args=(name,))
                    for name in ("cat.png", "dog.png", "broken.png")
                ]
            for job_id in ids:
                await scheduler.wait_for_job(job_id, timeout=30)
            await asyncio.wait_for(all_attempts_ended.wait(), timeout=30)
    finally:
        await pool.close()

    for event in seen:
        print(f"event: {event.kind.value:<10} {event.job_id[:8]} attempt {event.attempt}")
    for span in spans.get_finished_spans():
        parent = f"{span.parent.span_id:016x}" if span.parent else "none"
        print(f"span: {span.name:<24} span {span.context.span_id:016x} parent {parent}")
    text = await asyncio.to_thread(scrape, port)  # what Prometheus would see
    stop_exporter()
    for line in text.splitlines():
        if line.startswith("scheduler_attempts_total"):
            print(line)
    assert any('outcome="retried"' in line for line in text.splitlines())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
