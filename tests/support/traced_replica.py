"""A replica with OpenTelemetry tracing, in its own OS process, for the trace-parentage test.

    python -m tests.support.traced_replica DSN SCHEMA SPANS_FILE

Prints "READY <worker id>" once started; on SIGTERM it shuts down and writes the spans it
finished (an in-memory exporter) to SPANS_FILE as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import anyio
import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scheduler import Scheduler
from scheduler.tracing import OpenTelemetryTracing
from tests.support import observed_jobs  # noqa: F401 - registers its @task functions


async def main(dsn: str, schema: str, spans_file: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The job's own spans use the global provider: the same one here.
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
    assert pool is not None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler = Scheduler(
        pool,
        schema=schema,
        lease_time=2.0,
        heartbeat_interval=0.4,
        poll_interval=0.5,
        extensions=[OpenTelemetryTracing(provider)],
    )
    async with scheduler:
        print(f"READY {scheduler.worker_id}", flush=True)
        await stop.wait()
    await pool.close()
    spans = [
        {
            "name": span.name,
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_span_id": None if span.parent is None else format(span.parent.span_id, "016x"),
            "attributes": dict(span.attributes or {}),
        }
        for span in exporter.get_finished_spans()
    ]
    await anyio.Path(spans_file).write_text(json.dumps(spans))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
