"""What a W2 drain waits on (issue 22): one claim → run → record cycle, from both sides.

Starts a throwaway PostgreSQL cluster of its own (durable defaults; `pg_stat_statements`
and `auto_explain` loaded, which need a server start), so that the server's CPU can be read
off its own processes and nothing else shares its statistics. Then, each a drain of
`--jobs` due no-op jobs by one in-process Scheduler at `--concurrency` slots:

1. **Clean drain**, nothing observing: jobs/s, the client's CPU per job, the server's CPU
   per job (every process of the cluster, exited backends included), and the machine's.
   Per statement, from `pg_stat_statements`: calls per job, execution and planning time
   per call and per job, rows, buffers and WAL per job. Top-level statements are what the
   client sent; nested ones (inside functions and triggers) are part of their time.
2. **Observed drain**: a sampler reads `pg_stat_activity` every `--sample-ms` and counts
   what the scheduler's backends were doing (running, waiting for the client, flushing
   WAL, on a lock); asyncpg's query logger times each statement as the client saw it, and
   event handlers stamp each job's start and recorded success. From those, one cycle is
   printed as a timeline: a claim, the jobs it started and ended, and the claim that
   carried their successes into its commit.
3. **Plans**: a drain of the same backlog with `auto_explain` (ANALYZE, BUFFERS, nested
   statements) on for one top-level statement in ten; one plan of each hot-path statement
   from the middle of the drain is printed.

4. **One `schedule()` at a time** (W1 single): 2,000 awaited calls, with durable commits
   and with `synchronous_commit` off, alternated: twice each for the rate, the client's
   and server's CPU per call and the INSERT's execution time, then once each with the
   sampler for what the backend waited on.
5. **Levers** (`--all-variants` or `--variant NAME`): the same clean drain with one thing
   taken out of the schema for the experiment (see VARIANTS), alternated with the
   baseline, `--rounds` drains each: what each lever could gain at most.

    python -m benchmarks.timeline [--jobs 10000] [--concurrency 10] [--all-variants]
        [--rounds 3] [--out FILE.json]

Must run as root or as `postgres` (the cluster's processes run as `postgres`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.profile_drain import machine_busy_seconds
from benchmarks.run import drop, fresh_scheduler, insert_due_jobs, poll_until_drained
from benchmarks.tasks import noop
from scheduler import EventKind, JobEvent
from scheduler.postgres.sql import quote_identifier
from scheduler.services.completions import CompletionBatcher
from tests.support.processes import ThrowawayCluster

SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_planning": "on",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "text",
}

STATEMENTS = """
SELECT toplevel, query, calls, total_exec_time, total_plan_time, plans, rows,
       shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, wal_bytes
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%pg_stat_activity%'
"""

ACTIVITY = """
SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND application_name <> 'timeline-observer'
"""


def server_cpu_seconds(cluster: ThrowawayCluster) -> float:
    """CPU the cluster's processes have used: the live ones' own, plus what the postmaster
    has collected from children that exited (backends, autovacuum workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    pids = cluster.server_pids()
    for index, pid in enumerate(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the name: state is [0], utime [11], stime [12], cutime [13], cstime [14].
        total += int(fields[11]) + int(fields[12])
        if index == 0:
            total += int(fields[13]) + int(fields[14])
    return total / tick


def label(query: str) -> str:
    """A short, recognisable name for a statement's text."""
    text = " ".join(query.split())
    called = re.search(r"\.(\w+)\(", text)
    head = text[:60]
    if text.startswith("WITH done AS MATERIALIZED"):
        return "claim_jobs (claim + carried successes)"
    if called and text.upper().startswith(("SELECT", "WITH")):
        return f"{head[:34]}… {called.group(1)}()"
    return head


#: Experiments, not product changes: each takes something out of the schema (or the
#: commit's flush) for one drain, to measure the most that removing it could gain.
VARIANTS: dict[str, str] = {
    "baseline": "",
    # The three statement-level update triggers (the NOTIFYs for finished jobs, cancel
    # requests and due retries): what merging them into one could save, at most.
    "no update triggers": "ALTER TABLE {q}.jobs DISABLE TRIGGER jobs_notify_finished;"
    " ALTER TABLE {q}.jobs DISABLE TRIGGER jobs_notify_cancel;"
    " ALTER TABLE {q}.jobs DISABLE TRIGGER jobs_notify_update",
    # The history row's foreign key check (one per attempt recorded).
    "no history foreign key": "ALTER TABLE {q}.job_attempts"
    " DROP CONSTRAINT job_attempts_job_id_fkey",
    # No history row for a success (a row trigger returning NULL skips the insert; its
    # own call is paid): the bound of "a first-try success writes no history row".
    "no success history row": "CREATE FUNCTION {q}.skip_success() RETURNS trigger"
    " LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;"
    " CREATE TRIGGER skip_success BEFORE INSERT ON {q}.job_attempts FOR EACH ROW"
    " WHEN (NEW.outcome = 'succeeded') EXECUTE FUNCTION {q}.skip_success()",
    # Commits not waiting for the WAL flush (synchronous_commit off for the drain's
    # sessions): what the durable commit costs.
    "commit without flush": "",
    # Successes written by their own group commits on other connections, in parallel with
    # the claim, instead of carried in the claim's statement (the completion batcher never
    # holds them): what the serial claim's share of recording costs the drain.
    "successes apart from the claim": "",
}


@contextlib.contextmanager
def successes_apart() -> Iterator[None]:
    """The experiment's code change, for one drain: the batcher's `hold` never turns on."""
    original = CompletionBatcher.hold
    CompletionBatcher.hold = property(  # type: ignore[assignment,method-assign]
        lambda batcher: False, lambda batcher, value: None
    )
    try:
        yield
    finally:
        CompletionBatcher.hold = original  # type: ignore[method-assign]


async def clean_drain(
    cluster: ThrowawayCluster, dsn: str, jobs: int, slots: int, variant: str = "baseline"
) -> dict[str, Any]:
    settings = {"synchronous_commit": "off"} if variant == "commit without flush" else {}
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=slots + 6, server_settings=settings)
    assert pool is not None
    scheduler = await fresh_scheduler(pool, max_concurrent_jobs=slots)
    schema = scheduler.config.schema
    try:
        if VARIANTS[variant]:
            await pool.execute(VARIANTS[variant].format(q=quote_identifier(schema)))
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        await pool.execute("CHECKPOINT")
        await pool.execute("SELECT pg_stat_statements_reset()")
        server, machine = server_cpu_seconds(cluster), machine_busy_seconds()
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        apart = variant == "successes apart from the claim"
        with successes_apart() if apart else contextlib.nullcontext():
            async with scheduler:
                await poll_until_drained(pool, schema)
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        server = server_cpu_seconds(cluster) - server
        machine = machine_busy_seconds() - machine
        client = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
        rows = await pool.fetch(STATEMENTS)
    finally:
        await drop(pool, schema)
        await pool.close()
    statements = []
    for row in rows:
        calls = row["calls"]
        if calls < jobs / 100:  # the drain's own polling, start-up and shut-down
            continue
        statements.append(
            {
                "statement": label(row["query"]),
                "toplevel": row["toplevel"],
                "calls_per_job": round(calls / jobs, 3),
                "exec_ms_per_call": round(row["total_exec_time"] / calls, 3),
                "plan_ms_per_call": round(row["total_plan_time"] / max(row["plans"], 1), 3),
                "plans": row["plans"],
                "exec_us_per_job": round(row["total_exec_time"] * 1000 / jobs, 1),
                "plan_us_per_job": round(row["total_plan_time"] * 1000 / jobs, 1),
                "rows_per_call": round(row["rows"] / calls, 2),
                "buffers_hit_per_job": round(row["shared_blks_hit"] / jobs, 1),
                "buffers_dirtied_per_job": round(row["shared_blks_dirtied"] / jobs, 2),
                "wal_bytes_per_job": round(float(row["wal_bytes"]) / jobs),
            }
        )
    statements.sort(key=lambda s: (not s["toplevel"], -s["exec_us_per_job"]))
    return {
        "variant": variant,
        "jobs/s": round(jobs / wall),
        "client_cpu_us_per_job": round(client / jobs * 1e6, 1),
        "server_cpu_us_per_job": round(server / jobs * 1e6, 1),
        "machine_cpu_us_per_job": round(machine / jobs * 1e6, 1),
        "machine_busy_share": round(machine / (wall * (os.cpu_count() or 1)), 2),
        "statements": statements,
    }


async def enqueue_one_by_one(
    cluster: ThrowawayCluster, dsn: str, jobs: int, flush: bool, sample_ms: float | None
) -> dict[str, Any]:
    """W1 single from both sides: `jobs` awaited `schedule()` calls, with what the client
    and the server spent per call, or (`sample_ms`) what the backend waited on: the
    sampler runs in this process and queries the server, so its runs report no CPU."""
    settings = {} if flush else {"synchronous_commit": "off"}
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4, server_settings=settings)
    observer = await asyncpg.connect(dsn, server_settings={"application_name": "timeline-observer"})
    assert pool is not None
    scheduler = await fresh_scheduler(pool)
    schema = scheduler.config.schema
    samples: Counter[str] = Counter()
    try:
        await pool.execute("SELECT pg_stat_statements_reset()")
        done = asyncio.Event()

        async def sample() -> None:
            while sample_ms is not None and not done.is_set():
                for row in await observer.fetch(ACTIVITY):
                    if row["state"] != "idle":
                        samples[
                            category(row["state"], row["wait_event_type"], row["wait_event"])
                        ] += 1
                    else:
                        samples["waiting for the client"] += 1
                await asyncio.sleep(sample_ms / 1000)

        sampler = asyncio.create_task(sample())
        server, usage = server_cpu_seconds(cluster), resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter()
        for _ in range(jobs):
            await scheduler.schedule(noop)
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        server = server_cpu_seconds(cluster) - server
        done.set()
        await sampler
        rows = await pool.fetch(STATEMENTS)
    finally:
        await observer.close()
        await drop(pool, schema)
        await pool.close()
    client = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    top = max((r for r in rows if r["toplevel"]), key=lambda r: r["calls"])
    total = sum(samples.values()) or 1
    result: dict[str, Any] = {
        "commit": "flushed (durable default)" if flush else "synchronous_commit off",
        "schedule()/s": round(jobs / wall),
        "wall_us_per_call": round(wall / jobs * 1e6),
        "insert_exec_us_per_call": round(top["total_exec_time"] * 1000 / top["calls"], 1),
        "insert_statement": label(top["query"]),
    }
    if sample_ms is None:
        result["client_cpu_us_per_call"] = round(client / jobs * 1e6, 1)
        result["server_cpu_us_per_call"] = round(server / jobs * 1e6, 1)
    else:
        result["backend_states"] = {k: round(v / total, 3) for k, v in samples.most_common()}
    return result


def category(state: str | None, wait_type: str | None, wait: str | None) -> str:
    if state in ("idle", "idle in transaction"):
        return "waiting for the client" if state == "idle" else "idle in a transaction"
    if wait_type is None:
        return "running (CPU)"
    if wait_type in ("IO", "LWLock") and "WAL" in (wait or ""):
        return f"writing WAL ({wait})"
    if wait_type in ("Lock", "LWLock"):
        return f"lock ({wait_type}: {wait})"
    if wait_type == "Client":
        return f"client I/O ({wait})"
    return f"{wait_type}: {wait}"


async def observed_drain(dsn: str, jobs: int, slots: int, sample_ms: float) -> dict[str, Any]:
    # Client-side timing of every statement the scheduler sends: (end, elapsed, text).
    sent: list[tuple[float, float, str]] = []

    def log_query(record: Any) -> None:
        end = time.perf_counter()
        sent.append((end - record.elapsed, record.elapsed, record.query))

    async def add_logger(connection: asyncpg.Connection[Any]) -> None:
        connection.add_query_logger(log_query)

    stamps: dict[str, dict[str, float]] = defaultdict(dict)

    def on_event(event: JobEvent) -> None:
        if event.kind in (EventKind.STARTED, EventKind.SUCCEEDED):
            stamps[event.job_id][event.kind.value] = time.perf_counter()

    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=slots + 6, init=add_logger)
    observer = await asyncpg.connect(dsn, server_settings={"application_name": "timeline-observer"})
    assert pool is not None
    scheduler = await fresh_scheduler(pool, max_concurrent_jobs=slots, event_handlers=[on_event])
    schema = scheduler.config.schema
    samples: Counter[str] = Counter()
    active: list[int] = []
    try:
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        sent.clear()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                rows = await observer.fetch(ACTIVITY)
                for row in rows:
                    samples[category(row["state"], row["wait_event_type"], row["wait_event"])] += 1
                active.append(sum(1 for r in rows if r["state"] == "active"))
                await asyncio.sleep(sample_ms / 1000)

        wall = time.perf_counter()
        async with scheduler:
            sampler = asyncio.create_task(sample())
            await poll_until_drained(pool, schema)
            done.set()
            await sampler
        wall = time.perf_counter() - wall
    finally:
        await observer.close()
        await drop(pool, schema)
        await pool.close()
    total = sum(samples.values())
    backends = {name: round(count / total, 3) for name, count in samples.most_common()}
    by_statement: dict[str, list[float]] = defaultdict(list)
    for _, elapsed, query in sent:
        by_statement[label(query)].append(elapsed)
    client_view = [
        {
            "statement": name,
            "calls_per_job": round(len(times) / jobs, 3),
            "client_ms_per_call_median": round(sorted(times)[len(times) // 2] * 1000, 3),
            "client_ms_per_call_mean": round(sum(times) / len(times) * 1000, 3),
        }
        for name, times in sorted(by_statement.items(), key=lambda item: -len(item[1]))
        if len(times) >= jobs / 100
    ]
    return {
        "jobs/s (observed)": round(jobs / wall),
        "backend_states": backends,
        "mean_active_backends": round(sum(active) / max(len(active), 1), 2),
        "samples": len(active),
        "client_view": client_view,
        "cycle": one_cycle(sent, stamps),
    }


def one_cycle(
    sent: list[tuple[float, float, str]], stamps: dict[str, dict[str, float]]
) -> list[str]:
    """A window from the middle of the drain: a claim statement, the jobs it started, and
    the statement that recorded their successes, in time order (ms from the claim's
    start)."""
    claims = sorted((start, elapsed) for start, elapsed, query in sent if "claim_scope" in query)
    if len(claims) < 3:
        return []
    start, elapsed = claims[len(claims) // 2]
    started = sorted(
        (s["started"], s.get("succeeded"), job)
        for job, s in stamps.items()
        if "started" in s and start <= s["started"] <= start + 0.05
    )
    if not started:
        return []
    horizon = max(s or st for st, s, _ in started) + 0.001
    events: list[tuple[float, str]] = []
    for when, took, query in sent:
        if start <= when <= horizon:
            events.append((when, f"send  {label(query)} ({took * 1000:.2f} ms round trip)"))
    claim_end = start + elapsed
    for st, succeeded, job in started:
        events.append((st, f"start job …{job[-6:]}"))
        if succeeded is not None:
            events.append((succeeded, f"success of …{job[-6:]} recorded (event)"))
    events.append((claim_end, "claim's rows back in the client"))
    events.sort()
    return [f"{(when - start) * 1000:8.2f} ms  {text}" for when, text in events[:40]]


async def plans(cluster: ThrowawayCluster, dsn: str, jobs: int, slots: int) -> list[str]:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("ALTER SYSTEM SET auto_explain.log_min_duration = 0")
        # One top-level statement in ten (with everything nested in it): plans of a drain
        # of the same backlog as the others, without logging every statement's.
        await admin.execute("ALTER SYSTEM SET auto_explain.sample_rate = 0.1")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    log = cluster.dir / "log"
    offset = log.stat().st_size
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=slots + 6)
    assert pool is not None
    scheduler = await fresh_scheduler(pool, max_concurrent_jobs=slots)
    schema = scheduler.config.schema
    try:
        await insert_due_jobs(pool, schema, jobs)
        await pool.execute(f"ANALYZE {quote_identifier(schema)}.jobs")
        async with scheduler:
            await poll_until_drained(pool, schema)
    finally:
        await drop(pool, schema)
        await pool.close()
        admin = await asyncpg.connect(dsn)
        await admin.execute("ALTER SYSTEM RESET auto_explain.log_min_duration")
        await admin.execute("ALTER SYSTEM RESET auto_explain.sample_rate")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()
    with open(log) as text:
        text.seek(offset)
        entries = re.split(r"\n(?=\S+ \S+ UTC \[\d+\] LOG:  duration:)", text.read())
    wanted = ("claim_scope", "end_attempts", "UPDATE", "INSERT INTO")
    seen: set[str] = set()
    chosen: list[str] = []
    for entry in entries[len(entries) // 2 :]:  # the middle of the drain, plans warmed up
        query = re.search(r"Query Text: (.*)", entry)
        if not query:
            continue
        key = label(query.group(1))
        if key not in seen and any(w in entry for w in wanted):
            seen.add(key)
            lines = entry.strip().splitlines()
            duration = re.search(r"duration: ([\d.]+) ms", lines[0])
            plan = [line for line in lines if line.startswith("\t")]
            first = next((i for i, line in enumerate(plan) if "(cost=" in line), len(plan))
            # The plan's own lines: the statement's text and its caller's are left out.
            body = [line[1:] for line in plan[first:] if not line.startswith("\t\t")]
            took = duration.group(1) if duration else "?"
            chosen.append(f"-- {key} ({took} ms)\n" + "\n".join(body))
    return chosen


async def compare(
    cluster: ThrowawayCluster, dsn: str, jobs: int, slots: int, variants: list[str], rounds: int
) -> list[dict[str, Any]]:
    """Each variant beside the baseline, alternated, `rounds` drains each: medians."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _ in range(rounds):
        for variant in ["baseline", *variants]:
            runs[variant].append(await clean_drain(cluster, dsn, jobs, slots, variant))
    summary = []
    for variant, results in runs.items():
        row: dict[str, Any] = {"variant": variant, "runs": len(results)}
        for key in ("jobs/s", "client_cpu_us_per_job", "server_cpu_us_per_job"):
            row[key] = sorted(r[key] for r in results)[len(results) // 2]
        claims = [
            s["exec_us_per_job"]
            for r in results
            for s in r["statements"]
            if s["toplevel"] and s["statement"].startswith("claim_jobs")
        ]
        row["claim_exec_us_per_job"] = sorted(claims)[len(claims) // 2] if claims else None
        summary.append(row)
    return summary


async def run(
    jobs: int, slots: int, sample_ms: float, variants: list[str], rounds: int
) -> dict[str, Any]:
    cluster = ThrowawayCluster(SETTINGS)
    cluster.start()
    try:
        dsn = cluster.dsn
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        version = await admin.fetchval("SHOW server_version")
        await admin.close()
        clean = await clean_drain(cluster, dsn, jobs, slots)
        levers = await compare(cluster, dsn, jobs, slots, variants, rounds) if variants else []
        observed = await observed_drain(dsn, jobs, slots, sample_ms)
        explained = await plans(cluster, dsn, jobs, slots)
        enqueue = [
            await enqueue_one_by_one(cluster, dsn, 2_000, flush, sampling)
            for sampling in (None, None, sample_ms)
            for flush in (True, False)
        ]
    finally:
        cluster.stop()
    return {
        "conditions": {
            "postgres": version,
            "jobs": jobs,
            "concurrency": slots,
            "cpus": os.cpu_count(),
            "load_at_end": os.getloadavg(),
        },
        "clean": clean,
        "levers": levers,
        "observed": observed,
        "enqueue_one_by_one": enqueue,
        "plans": explained,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--sample-ms", type=float, default=2.0)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        choices=[v for v in VARIANTS if v != "baseline"],
        help="an experiment to drain beside the baseline (repeatable)",
    )
    parser.add_argument("--all-variants", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternated drains per variant")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v != "baseline"] if args.all_variants else args.variant
    result = asyncio.run(run(args.jobs, args.concurrency, args.sample_ms, variants, args.rounds))
    plans_text = result.pop("plans")
    print(json.dumps(result, indent=1))
    for plan in plans_text:
        print("\n" + plan)
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "plans": plans_text}, indent=1) + "\n")


if __name__ == "__main__":
    main()
