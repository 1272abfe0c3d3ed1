"""Chaos soak: replicas run a mixed workload on a throwaway PostgreSQL while a driver kills,
freezes and restarts them and restarts the database; then an independent checker reads the
tables and the fault log and judges the run.

    python -m tests.chaos.soak --minutes 10 --replicas 4      (or: nox -s soak)

Exits 1 on any violation. Every attempt writes (job, attempt, pid, start, end) to a side
table from inside the job; the checker trusts nothing the scheduler reports about itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from scheduler import CronTrigger, Scheduler
from scheduler.runner import TRANSIENT_ERRORS
from tests.support import side_jobs
from tests.support.processes import Replica, ThrowawayCluster

SCHEMA = "soak"
#: Every replica declares this per-second schedule; the checker wants one job per slot and
#: no slot missing (ALL catches up after faults).
SLOT_SCHEDULE = "soak-every-second"
SLOT_TRIGGER = CronTrigger("* * * * * *")
LEASE_TIME = 2.0
ORPHAN_RETRIES = 2
CONNECTION_ERRORS = TRANSIENT_ERRORS  # what a producer retries while the database is away
SLOT_DECLARATION = json.dumps(
    {
        "id": SLOT_SCHEDULE,
        "trigger": SLOT_TRIGGER.to_json(),
        "seconds": 0.05,
        "coalesce": "all",
        "max_running": None,
    }
)


@dataclass
class Fault:
    at: float  # time.time(): same host clock as the database's clock_timestamp()
    kind: str
    pid: int | None = None
    until: float | None = None  # end of a freeze


@dataclass
class Run:
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancel_results: dict[str, bool] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    schedule_errors: int = 0
    slot_jobs: dict[str, datetime] = field(default_factory=dict)  # job id -> fire time


class Fleet:
    """The replica processes; a dead one is replaced."""

    def __init__(self, dsn: str, count: int) -> None:
        self.dsn = dsn
        self.replicas: list[Replica | None] = [None] * count

    def ensure_running(self) -> None:
        for i, replica in enumerate(self.replicas):
            if replica is None or replica.process.poll() is not None:
                if replica is not None:
                    replica.stop()
                try:
                    self.replicas[i] = Replica(
                        self.dsn, SCHEMA, "--concurrency", "8", "--schedule", SLOT_DECLARATION
                    )
                except RuntimeError:
                    self.replicas[i] = None  # the database may be restarting: next round

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r is not None and r.process.poll() is None]

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica is not None:
                replica.stop()


async def produce(scheduler: Scheduler, run: Run, stop_at: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.time() < stop_at:
        kind = rng.choices(
            ["ok", "long", "fail", "flaky", "delayed", "cancel"], [50, 8, 8, 10, 12, 12]
        )[0]
        seconds = rng.uniform(1.5, 4.0) if kind == "long" else rng.uniform(0.01, 0.3)
        behaviour = kind if kind in ("fail", "flaky") else "ok"
        try:
            job_id = await scheduler.schedule(
                side_jobs.soak,
                args=(behaviour, seconds),
                delay=rng.uniform(0.5, 5) if kind == "delayed" else None,
                max_retries=rng.choice([1, 2]) if kind == "flaky" else rng.choice([0, 1, 2]),
            )
        except CONNECTION_ERRORS:
            run.schedule_errors += 1  # not acknowledged: no promise made
            await asyncio.sleep(0.2)
            continue
        run.acknowledged[job_id] = {"kind": kind}
        if kind == "cancel":
            await asyncio.sleep(rng.uniform(0, 0.3))
            with contextlib.suppress(*CONNECTION_ERRORS):
                run.cancel_results[job_id] = await scheduler.cancel_job(job_id, wait=5)
        await asyncio.sleep(rng.uniform(0.01, 0.08))


async def inject_faults(
    cluster: ThrowawayCluster, fleet: Fleet, run: Run, stop_at: float, seed: int
) -> None:
    rng = random.Random(seed + 1)
    while time.time() < stop_at:
        await asyncio.sleep(rng.uniform(3, 8))
        fleet.ensure_running()
        live = fleet.live()
        kind = rng.choices(["kill", "freeze", "term", "restart_db"], [40, 25, 15, 20])[0]
        if kind == "restart_db":
            run.faults.append(Fault(time.time(), kind))
            mode = rng.choice(["fast", "immediate"])
            await asyncio.to_thread(partial(cluster.restart, mode))
        elif live:
            victim = rng.choice(live)
            if kind == "kill":
                victim.signal(signal.SIGKILL)
                run.faults.append(Fault(time.time(), kind, victim.pid))
            elif kind == "term":
                victim.signal(signal.SIGTERM)  # graceful: drains, releases
                run.faults.append(Fault(time.time(), kind, victim.pid))
            else:
                frozen = rng.uniform(LEASE_TIME + 0.5, LEASE_TIME * 2.5)
                start = time.time()
                victim.signal(signal.SIGSTOP)
                run.faults.append(Fault(start, kind, victim.pid, start + frozen))
                await asyncio.sleep(frozen)
                victim.signal(signal.SIGCONT)


def check(
    run: Run, jobs: Mapping[str, Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The independent checker: facts from the tables and the fault log only."""
    violations: list[str] = []
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for row in attempts:
        by_job.setdefault(row["job_id"], []).append(row)
    faulted_pids = {f.pid for f in run.faults if f.pid is not None}
    db_restarts = [f.at for f in run.faults if f.kind == "restart_db"]
    violations.extend(check_slots(run.slot_jobs))
    for job_id in [*run.acknowledged, *run.slot_jobs]:
        job = jobs.get(job_id)
        if job is None:
            violations.append(f"{job_id}: acknowledged but missing")
            continue
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            violations.append(f"{job_id}: never reached a terminal state ({job['status']})")
        if job["attempts"] > 1 + job["max_retries"] + ORPHAN_RETRIES:
            violations.append(f"{job_id}: {job['attempts']} attempts exceed the maximum")
        if run.cancel_results.get(job_id) and job["status"] != "cancelled":
            violations.append(f"{job_id}: cancel_job said True, status {job['status']}")
        runs = sorted(by_job.get(job_id, []), key=lambda r: r["started_at"])
        if job["status"] == "succeeded":
            final = [r for r in runs if r["attempt"] == job["attempts"]]
            if not final or final[0]["finished_at"] is None:
                violations.append(f"{job_id}: succeeded but its final attempt never finished")
        for earlier, later in itertools.pairwise(runs):
            end = earlier["finished_at"] or earlier["failed_at"]
            started = later["started_at"].timestamp()
            if end is not None and end.timestamp() <= started:
                continue  # one after the other
            # Overlap is allowed only when the earlier attempt's lease could have expired:
            # its replica was killed, frozen or stopped, or the database restarted.
            excused = earlier["pid"] in faulted_pids or any(
                earlier["started_at"].timestamp() <= at <= started for at in db_restarts
            )
            if not excused:
                violations.append(
                    f"{job_id}: attempts {earlier['attempt']} and"
                    f" {later['attempt']} overlapped with no fault to explain it"
                )
    return violations


def check_slots(slot_jobs: Mapping[str, datetime]) -> list[str]:
    """One job per slot of the recurring schedule, and no slot missing in between."""
    fire_times = sorted(slot_jobs.values())
    violations = [
        f"slot {fire_time} has {n} jobs" for fire_time, n in Counter(fire_times).items() if n > 1
    ]
    for earlier, later in itertools.pairwise(sorted(set(fire_times))):
        expected = SLOT_TRIGGER.next_fire_time(earlier)
        if expected != later:
            violations.append(f"slots missing between {earlier} and {later}")
    return violations


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument(
        "--seed",
        type=int,
        default=random.randrange(1_000_000),
        help="replays the same workload and fault choices (timing still varies)",
    )
    options = parser.parse_args()
    cluster = ThrowawayCluster()
    cluster.start()
    fleet = Fleet(cluster.dsn, options.replicas)
    run = Run()
    pool = await asyncpg.create_pool(cluster.dsn, min_size=2, max_size=8)
    assert pool is not None
    started = time.time()
    try:
        scheduler = Scheduler(pool, schema=SCHEMA)
        await scheduler.migrate()
        await pool.execute(side_jobs.side_table_sql(SCHEMA))
        fleet.ensure_running()
        stop_at = started + options.minutes * 60
        await asyncio.gather(
            produce(scheduler, run, stop_at, options.seed),
            inject_faults(cluster, fleet, run, stop_at, options.seed),
        )
        # Calm: every replica up, no more faults, the schedule paused; wait for the
        # acknowledged work and every fired slot to finish.
        deadline = time.time() + 180
        paused = False
        while time.time() < deadline:
            fleet.ensure_running()
            try:
                paused = paused or await scheduler.pause_schedule(SLOT_SCHEDULE)
                open_jobs = await pool.fetchval(
                    f"SELECT count(*) FROM {SCHEMA}.jobs"
                    " WHERE (job_id = ANY($1::text[]) OR schedule_id = $2)"
                    " AND status IN ('pending', 'running')",
                    list(run.acknowledged),
                    SLOT_SCHEDULE,
                )
            except CONNECTION_ERRORS:
                open_jobs = -1
            if open_jobs == 0:
                break
            await asyncio.sleep(1)
        jobs = {
            r["job_id"]: dict(r)
            for r in await pool.fetch(
                f"SELECT job_id, status, attempts, max_retries FROM {SCHEMA}.jobs"
            )
        }
        attempts = [dict(r) for r in await pool.fetch(f"SELECT * FROM {SCHEMA}.executions")]
        run.slot_jobs = {
            r["job_id"]: r["fire_time"]
            for r in await pool.fetch(
                f"SELECT job_id, fire_time FROM {SCHEMA}.jobs WHERE schedule_id = $1",
                SLOT_SCHEDULE,
            )
        }
    finally:
        fleet.stop_all()
        await pool.close()
        cluster.stop()
    violations = check(run, jobs, attempts)
    summary = {
        "minutes": round((time.time() - started) / 60, 1),
        "replicas": options.replicas,
        "seed": options.seed,
        "jobs_acknowledged": len(run.acknowledged),
        "final_status": dict(Counter(jobs[j]["status"] for j in run.acknowledged if j in jobs)),
        "attempts_recorded": len(attempts),
        "cancel_calls": len(run.cancel_results),
        "cancel_true": sum(run.cancel_results.values()),
        "faults": dict(Counter(f.kind for f in run.faults)),
        "schedule_calls_refused_during_faults": run.schedule_errors,
        "recurring_slots": len(run.slot_jobs),
        "recurring_final_status": dict(Counter(jobs[j]["status"] for j in run.slot_jobs)),
        "violations": len(violations),
    }
    print(json.dumps(summary, indent=2))
    for violation in violations[:50]:
        print("VIOLATION", violation)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
