"""Tracing across processes (issue 14, item 3): the trace context of the code calling
`schedule()` is stored with the job, and the span of the attempt another OS process runs
is its child; the job's own spans are children of the attempt's span."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import anyio
import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scheduler import Scheduler
from scheduler.tracing import ATTEMPT, JOB_ID, QUEUE, TASK, OpenTelemetryTracing
from tests.support import observed_jobs
from tests.support.db import TEST_DSN
from tests.support.processes import ROOT


async def test_the_attempt_span_in_another_process_is_a_child_of_the_callers_span(
    pool: asyncpg.Pool, migrated: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    spans_file = Path(tempfile.mkstemp(prefix="spans-", suffix=".json")[1])
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.traced_replica", TEST_DSN, migrated, str(spans_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("READY ")
        # A producer-only scheduler in this process, with tracing: it stores the context.
        producer = Scheduler(pool, schema=migrated, extensions=[OpenTelemetryTracing(provider)])
        key = uuid.uuid4().hex
        with tracer.start_as_current_span("handle request") as request:
            job_id = await producer.schedule(observed_jobs.traced, args=(key,))
        untraced_id = await producer.schedule(observed_jobs.succeed, args=(key,))
        job = await producer.wait_for_job(job_id, timeout=20)
        assert job.result == key
        await producer.wait_for_job(untraced_id, timeout=20)
    finally:
        os.kill(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    spans = json.loads(await anyio.Path(spans_file).read_text())
    await anyio.Path(spans_file).unlink()

    [attempt] = [s for s in spans if s["attributes"].get(JOB_ID) == job_id]
    caller = request.get_span_context()
    assert attempt["trace_id"] == format(caller.trace_id, "032x")
    assert attempt["parent_span_id"] == format(caller.span_id, "016x")
    assert attempt["attributes"][TASK] == "tests.support.observed_jobs:traced"
    assert attempt["attributes"][ATTEMPT] == 1
    assert attempt["attributes"][QUEUE] == "default"
    [inside] = [s for s in spans if s["name"] == "inside the job"]
    assert inside["parent_span_id"] == attempt["span_id"]
    assert inside["trace_id"] == attempt["trace_id"]
    # A job scheduled outside any span starts a trace of its own.
    [untraced] = [s for s in spans if s["attributes"].get(JOB_ID) == untraced_id]
    assert untraced["parent_span_id"] is None
    assert untraced["trace_id"] != attempt["trace_id"]
    # The producer's own exporter saw only its request span: the attempt ran elsewhere.
    assert [s.name for s in exporter.get_finished_spans()] == ["handle request"]


async def test_schedule_many_stores_the_callers_context_and_none_outside_a_span(
    pool: asyncpg.Pool, migrated: str
) -> None:
    from scheduler import JobRequest
    from scheduler.postgres.sql import quote_identifier

    provider = TracerProvider()
    producer = Scheduler(pool, schema=migrated, extensions=[OpenTelemetryTracing(provider)])
    with provider.get_tracer("tests").start_as_current_span("batch") as batch:
        ids = await producer.schedule_many(
            [JobRequest(observed_jobs.succeed, args=(str(n),)) for n in range(3)]
        )
    outside = await producer.schedule(observed_jobs.succeed, args=("outside",))
    rows = await pool.fetch(
        f"SELECT job_id, trace_context->>'traceparent' AS parent"
        f" FROM {quote_identifier(migrated)}.jobs WHERE job_id = ANY($1::text[])",
        [*ids, outside],
    )
    parents = {row["job_id"]: row["parent"] for row in rows}
    context = batch.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert [parents[job_id] for job_id in ids] == [expected] * 3
    assert parents[outside] is None
