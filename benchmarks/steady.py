"""Steady state (issue 21, item 5): at a constant enqueue rate, with replicas draining and
the pruner deleting what finished more than `--retention` seconds ago, do claim p99 and the
size of jobs, job_attempts and their indexes stay flat over time?

A producer inserts `--rate` no-op jobs per second (in batches every 100 ms, through
`schedule_many`), `--replicas` worker processes (benchmarks.worker, each writing its
claims' timings) drain them, and one in-process Scheduler with a short retention and prune
interval does the pruning (its max_concurrent_jobs=1 and a queue nobody uses keep it from
claiming). Every `--every` seconds one JSON line: elapsed seconds, jobs pending, running
and finished, the total relation size (heap + TOAST) and index size of jobs and
job_attempts (bytes), dead tuples (pg_stat_user_tables), and the p99 claim wall time of
the replicas' claims in the last period (read from their timing files at the end, so the
line for each period is printed after the run).

    python -m benchmarks.steady [--minutes 30] [--rate 200] [--replicas 2]
        [--retention 60] [--every 30] [--out FILE.jsonl] [--plot FILE.svg]

`--plot FILE.svg` draws sizes and claim p99 over time (a dependency-free SVG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import asyncpg

from benchmarks.backlog import percentile
from benchmarks.run import DSN, ROOT, drop, fresh_scheduler
from benchmarks.tasks import noop
from scheduler import JobRequest, Scheduler
from scheduler.postgres.sql import quote_identifier

SIZES = """
SELECT c.relname, pg_table_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes,
       s.n_dead_tup, s.n_live_tup, s.autovacuum_count
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = $1 AND c.relname IN ('jobs', 'job_attempts')
"""


async def sample(pool: asyncpg.Pool[Any], schema: str, elapsed: float) -> dict[str, Any]:
    q = quote_identifier(schema)
    counts = await pool.fetchrow(
        f"SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
        f" count(*) FILTER (WHERE status = 'running') AS running,"
        f" count(*) FILTER (WHERE status = 'succeeded') AS finished FROM {q}.jobs"
    )
    assert counts is not None
    record: dict[str, Any] = {"elapsed_s": round(elapsed), **dict(counts)}
    for row in await pool.fetch(SIZES, schema):
        name = row["relname"]
        record |= {
            f"{name}_table_bytes": row["table_bytes"],
            f"{name}_index_bytes": row["index_bytes"],
            f"{name}_dead_tuples": row["n_dead_tup"],
            f"{name}_autovacuums": row["autovacuum_count"],
        }
    return record


def read_claims(folder: str, replicas: int) -> list[tuple[float, float]]:
    """(start epoch, ms) of every claim the replicas timed."""
    claims: list[tuple[float, float]] = []
    for i in range(replicas):
        path = os.path.join(folder, f"claims-{i}.json")
        if os.path.exists(path):
            with open(path) as timings:
                claims += [(at, ms) for at, ms in json.load(timings)]
    return claims


async def produce(scheduler: Scheduler, rate: float, until: float) -> None:
    per_tick = max(1, round(rate / 10))
    next_tick = time.perf_counter()
    while time.perf_counter() < until:
        await scheduler.schedule_many(JobRequest(noop) for _ in range(per_tick))
        next_tick += per_tick / rate
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="jobs enqueued per second")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--retention", type=float, default=60, help="seconds")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--out", default="")
    parser.add_argument("--plot", default="")
    options = parser.parse_args()
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=6)
    assert pool is not None
    pruner = await fresh_scheduler(
        pool,
        max_concurrent_jobs=1,
        queues=["steady-pruner-only"],
        retention=options.retention,
        prune_interval=min(10.0, options.retention / 2),
    )
    schema = pruner.config.schema
    records: list[dict[str, Any]] = []
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for i in range(options.replicas):
                process = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.worker", DSN, schema, "--pool-max", "4",
                     "--claims-out", os.path.join(folder, f"claims-{i}.json")],
                    cwd=ROOT, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                processes.append(process)
                assert process.stdout is not None
                if process.stdout.readline().strip() != "READY":
                    raise RuntimeError("a replica failed to start")
            started = time.perf_counter()
            until = started + options.minutes * 60
            async with pruner:
                producer = asyncio.create_task(produce(pruner, options.rate, until))
                stamps: list[float] = []
                while time.perf_counter() < until:
                    await asyncio.sleep(options.every)
                    stamps.append(time.time())
                    records.append(await sample(pool, schema, time.perf_counter() - started))
                await producer
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
                if process.stdout is not None:
                    process.stdout.close()
            claims = read_claims(folder, len(processes))
            await drop(pool, schema)
            await pool.close()
    previous = stamps[0] - options.every if stamps else 0.0
    for record, stamp in zip(records, stamps, strict=True):
        window = [ms for at, ms in claims if previous <= at < stamp]
        record["claims"] = len(window)
        record["claim_ms_p99"] = round(percentile(window, 0.99), 2) if window else None
        record |= {"rate": options.rate, "replicas": options.replicas}
        previous = stamp
        print(json.dumps(record), flush=True)
    if options.out:
        with open(options.out, "w") as out:
            out.writelines(json.dumps(r) + "\n" for r in records)
    if options.plot:
        plot(records, options.plot)


SERIES = (
    ("jobs_table_bytes", "jobs", "#1f77b4"),
    ("jobs_index_bytes", "jobs indexes", "#ff7f0e"),
    ("job_attempts_table_bytes", "job_attempts", "#2ca02c"),
    ("job_attempts_index_bytes", "job_attempts indexes", "#d62728"),
)


def plot(records: list[dict[str, Any]], path: str) -> None:
    """A dependency-free SVG (as benchmarks/plot.py): sizes (MiB) above, claim p99 (ms)
    below, against minutes."""
    width, height, left, top = 760, 200, 70, 30
    minutes = [r["elapsed_s"] / 60 for r in records]
    span = max(minutes[-1], 1e-9) if minutes else 1.0
    parts: list[str] = []

    def panel(y0: int, title: str, series: list[tuple[str, str, list[float]]]) -> None:
        top_value = max([v for _, _, values in series for v in values] + [1e-9]) * 1.1
        parts.append(f'<text x="{left}" y="{y0 - 8}" font-size="13">{title}</text>')
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{width - left - 20}" height="{height}"'
            ' fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="4" y="{y0 + 12}" font-size="11">{top_value:.3g}</text>')
        parts.append(f'<text x="4" y="{y0 + height}" font-size="11">0</text>')
        for n, (label, colour, values) in enumerate(series):
            points = " ".join(
                f"{left + (width - left - 20) * m / span:.1f},"
                f"{y0 + height - height * v / top_value:.1f}"
                for m, v in zip(minutes, values, strict=True)
            )
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}"/>')
            parts.append(
                f'<text x="{left + 10 + 170 * n}" y="{y0 + 14}" font-size="11"'
                f' fill="{colour}">{label}</text>'
            )

    panel(
        top,
        "table and index size, MiB",
        [
            (label, colour, [r.get(key, 0) / 2**20 for r in records])
            for key, label, colour in SERIES
        ],
    )
    panel(
        top + height + 50,
        "claim p99 of the period, ms",
        [("claim p99", "#000", [r["claim_ms_p99"] or 0.0 for r in records])],
    )
    total = top + 2 * height + 80
    parts.append(f'<text x="{left}" y="{total - 8}" font-size="11">minutes 0 to {span:.1f}</text>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}"'
        f' font-family="sans-serif">{"".join(parts)}</svg>\n'
    )
    with open(path, "w") as out:
        out.write(svg)


if __name__ == "__main__":
    asyncio.run(main())
