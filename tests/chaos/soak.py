"""Chaos soak: replicas run a mixed workload on a throwaway PostgreSQL while a driver kills,
freezes and restarts them and restarts the database; then an independent checker reads the
tables and the fault log and judges the run.

    python -m tests.chaos.soak --minutes 10 --replicas 4      (or: nox -s soak)
    ... --seed N --keep-logs DIR     (replay a run's choices; keep replica logs to read)

Exits 1 on any violation. Every attempt writes (job, attempt, pid, worker id, start, end)
to a side table from inside the job; the checker trusts nothing the scheduler reports about
itself beyond the final row of each job.

Besides random kills, freezes, graceful stops and database restarts, the driver freezes a
replica past its lease right after a burst of due jobs (so the freeze lands mid-claim or
mid-start) and enqueues another burst just before it resumes: a replica must not claim or
start anything under the identity whose lease ran out while it was stopped. A few jobs
raise exceptions an outcome write cannot store as they are (NUL, a lone surrogate, no
str(), megabytes); they must end failed like any other failing job. Some jobs snooze once
(they must end without a failure counted), and some come in pairs where the second depends
on the first: it must never start before the first succeeded, and must end cancelled
without running when the first did not succeed. Some jobs have lock keys, one key with a
backlog longer than the claim's due-order window: jobs sharing a key must never run at
the same time (a fault that could have cost the holder its lease aside). Some go to a queue
with a concurrency limit and a rate limit (rows of `limits`, enforced by the serialised
claim through the kinds' functions): more of its jobs than the limit must never run at
once (the same faults aside).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
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

from scheduler import CronTrigger, JobRequest, Scheduler
from scheduler.attempt_runner import TRANSIENT_ERRORS
from tests.support import side_jobs
from tests.support.processes import KEEP_LOGS, Replica, ThrowawayCluster

SCHEMA = "soak"
#: Every replica declares this per-second schedule; the checker wants one job per slot and
#: no slot missing (ALL catches up after faults).
SLOT_SCHEDULE = "soak-every-second"
SLOT_TRIGGER = CronTrigger("* * * * * *")
LEASE_TIME = 2.0
ORPHAN_RETRIES = 2
CONCURRENCY = 8
#: Faults that stop a replica past its lease with the process still alive.
FREEZES = ("freeze", "freeze_claiming")
#: The workload's mix; the unrecordable kinds at a small rate.
KIND_WEIGHTS = {
    "ok": 50,
    "long": 8,
    "fail": 8,
    "flaky": 10,
    "delayed": 12,
    "cancel": 12,
    "snooze": 6,
    "pair": 8,
    "keyed": 8,
    "limited": 8,
    **{kind: 1 for kind in side_jobs.UNRECORDABLE},
}
#: The lock keys of "keyed" jobs; HOT_KEY's backlog, enqueued at the start, is longer than
#: the claim's due-order window, so the claim walks the keys to find the others' work.
KEYS = ("key-a", "key-b", "key-c", "key-d", "key-e")
HOT_KEY = "key-hot"
HOT_BACKLOG = 300
#: The queue of "limited" jobs: at most LIMITED_RUNNING of them run at once, fleet-wide,
#: and they start at 20/s at most (the bucket's arithmetic and its writes under faults).
LIMITED_QUEUE = "limited"
LIMITED_RUNNING = 2
#: Kinds whose every attempt raises: they can only end failed.
ALWAYS_FAILING = frozenset({"fail", *side_jobs.UNRECORDABLE})
#: What the checker reads of each job, in one place.
JOB_FACTS_SQL = (
    "SELECT job_id, status, attempts, max_retries, failures, lost_leases,"
    " cancel_requested_at IS NOT NULL AS cancel_requested,"
    " extract(epoch FROM created_at)::float8 AS created_epoch,"
    " extract(epoch FROM finished_at)::float8 AS finished_epoch"
    " FROM {schema}.jobs AS j"
)
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
    # time.time(), the clock of the side table too. For a replica fault, taken once the
    # signal is sent: an attempt that started before `at` started before the fault.
    at: float
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
    identities: dict[str, int] = field(default_factory=dict)  # worker id at start -> pid


class Fleet:
    """The replica processes; a dead one is replaced."""

    def __init__(self, dsn: str, count: int, identities: dict[str, int]) -> None:
        self.dsn = dsn
        self.replicas: list[Replica | None] = [None] * count
        self.identities = identities
        self.last_error: RuntimeError | None = None

    def ensure_running(self) -> None:
        for i, replica in enumerate(self.replicas):
            if replica is None or replica.process.poll() is not None:
                if replica is not None:
                    replica.stop()
                try:
                    started = Replica(
                        self.dsn,
                        SCHEMA,
                        "--concurrency",
                        str(CONCURRENCY),
                        "--lease-time",
                        str(LEASE_TIME),
                        "--schedule",
                        SLOT_DECLARATION,
                        "--queue",
                        "default",
                        "--queue",
                        LIMITED_QUEUE,
                    )
                except RuntimeError as error:
                    self.replicas[i] = None  # the database may be restarting: next round
                    self.last_error = error
                else:
                    self.replicas[i] = started
                    self.identities[started.worker_id] = started.pid

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r is not None and r.process.poll() is None]

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica is not None:
                replica.stop()


async def produce(scheduler: Scheduler, run: Run, stop_at: float, seed: int) -> None:
    rng = random.Random(seed)
    await scheduler.set_queue_limits(
        LIMITED_QUEUE, concurrency_limit=LIMITED_RUNNING, rate_limit=20, rate_burst=5
    )
    await enqueue_hot_key(scheduler, run, rng)
    while time.time() < stop_at:
        kind = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0]
        seconds = rng.uniform(1.5, 4.0) if kind == "long" else rng.uniform(0.01, 0.3)
        behaviour = kind if kind in ALWAYS_FAILING or kind in ("flaky", "snooze") else "ok"
        if kind == "pair":  # a parent that may fail, and a child waiting for it
            behaviour = rng.choice(["ok", "ok", "flaky", "fail"])
        key = rng.choice(KEYS) if kind == "keyed" else None
        try:
            job_id = await scheduler.schedule(
                side_jobs.soak,
                args=(behaviour, seconds),
                delay=rng.uniform(0.5, 5) if kind == "delayed" else None,
                max_retries=rng.choice([1, 2]) if kind == "flaky" else rng.choice([0, 1, 2]),
                lock_key=key,
                queue=LIMITED_QUEUE if kind == "limited" else None,
            )
        except CONNECTION_ERRORS:
            run.schedule_errors += 1  # not acknowledged: no promise made
            await asyncio.sleep(0.2)
            continue
        run.acknowledged[job_id] = {"kind": kind, "key": key}
        if kind == "pair":
            try:
                child = await scheduler.schedule(
                    side_jobs.soak, args=("ok", seconds), depends_on=[job_id]
                )
            except CONNECTION_ERRORS:
                run.schedule_errors += 1
                continue
            run.acknowledged[child] = {"kind": "child", "parent": job_id}
        if kind == "cancel":
            await asyncio.sleep(rng.uniform(0, 0.3))
            with contextlib.suppress(*CONNECTION_ERRORS):
                run.cancel_results[job_id] = await scheduler.cancel_job(job_id, wait=5)
        await asyncio.sleep(rng.uniform(0.01, 0.08))


async def enqueue_hot_key(scheduler: Scheduler, run: Run, rng: random.Random) -> None:
    """HOT_BACKLOG short jobs under one lock key, due now: they run one at a time."""
    requests = [
        JobRequest(side_jobs.soak, args=("ok", rng.uniform(0.005, 0.02)), lock_key=HOT_KEY)
        for _ in range(HOT_BACKLOG)
    ]
    for _ in range(20):  # the database may be away at the start: retry, bounded
        try:
            job_ids = await scheduler.schedule_many(requests)
            break
        except CONNECTION_ERRORS:
            run.schedule_errors += 1
            await asyncio.sleep(0.5)
    else:
        return
    for job_id in job_ids:
        run.acknowledged[job_id] = {"kind": "hot", "key": HOT_KEY}


async def enqueue_burst(scheduler: Scheduler, run: Run, rng: random.Random, count: int) -> None:
    """`count` short jobs due now in one statement."""
    requests = [
        JobRequest(
            side_jobs.soak, args=("ok", rng.uniform(0.05, 0.5)), max_retries=rng.choice([0, 1, 2])
        )
        for _ in range(count)
    ]
    try:
        job_ids = await scheduler.schedule_many(requests)
    except CONNECTION_ERRORS:
        run.schedule_errors += 1
        return
    for job_id in job_ids:
        run.acknowledged[job_id] = {"kind": "burst"}


async def freeze_while_claiming(
    scheduler: Scheduler, fleet: Fleet, victim: Replica, run: Run, rng: random.Random
) -> None:
    """Stop a replica past its lease in the middle of claiming and starting a burst, and
    resume it with due jobs waiting, so its first moves after the resume are claims."""
    # Twice the fleet's slots: every replica claims, and keeps claiming as slots free up.
    burst = 2 * CONCURRENCY * len(fleet.live())
    await enqueue_burst(scheduler, run, rng, burst)
    await asyncio.sleep(rng.uniform(0, 0.2))  # the NOTIFY has woken every dispatcher
    victim.signal(signal.SIGSTOP)
    frozen_at = time.time()
    await asyncio.sleep(rng.uniform(LEASE_TIME + 0.5, LEASE_TIME * 2.5))
    # More than the peers can take at once, so some are still due when the victim wakes.
    await enqueue_burst(scheduler, run, rng, burst)
    victim.signal(signal.SIGCONT)
    run.faults.append(Fault(frozen_at, "freeze_claiming", victim.pid, time.time()))


async def inject_faults(
    scheduler: Scheduler,
    cluster: ThrowawayCluster,
    fleet: Fleet,
    run: Run,
    stop_at: float,
    seed: int,
) -> None:
    rng = random.Random(seed + 1)
    while time.time() < stop_at:
        await asyncio.sleep(rng.uniform(3, 8))
        fleet.ensure_running()
        live = fleet.live()
        kind = rng.choices(
            ["kill", "freeze", "freeze_claiming", "term", "restart_db"], [35, 10, 20, 15, 20]
        )[0]
        if kind == "restart_db":
            began = time.time()
            mode = rng.choice(["fast", "immediate"])
            await asyncio.to_thread(partial(cluster.restart, mode))
            # The outage lasts from the command to the server's return: what ran in between
            # may have lost its writes (the side table's too), whenever it started.
            run.faults.append(Fault(began, kind, None, time.time()))
        elif live:
            victim = rng.choice(live)
            if kind == "kill":
                victim.signal(signal.SIGKILL)
                run.faults.append(Fault(time.time(), kind, victim.pid))
            elif kind == "term":
                victim.signal(signal.SIGTERM)  # graceful: drains, releases
                run.faults.append(Fault(time.time(), kind, victim.pid))
            elif kind == "freeze_claiming":
                await freeze_while_claiming(scheduler, fleet, victim, run, rng)
            else:
                frozen = rng.uniform(LEASE_TIME + 0.5, LEASE_TIME * 2.5)
                victim.signal(signal.SIGSTOP)
                start = time.time()
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
    violations.extend(check_slots(run.slot_jobs))
    if any(job["failures"] is None or job["lost_leases"] is None for job in jobs.values()):
        violations.append("the jobs table has no failures/lost_leases (migration 0003)")
    for job_id in [*run.acknowledged, *run.slot_jobs]:
        job = jobs.get(job_id)
        if job is None:
            violations.append(f"{job_id}: acknowledged but missing")
            continue
        kind = run.acknowledged.get(job_id, {}).get("kind")
        violations.extend(check_outcome(job_id, job, kind, run.cancel_results.get(job_id)))
        runs = sorted(by_job.get(job_id, []), key=lambda r: r["started_at"])
        if job["status"] == "succeeded":
            final = [r for r in runs if r["attempt"] == job["attempts"]]
            if not final or final[-1]["finished_at"] is None:
                violations.append(f"{job_id}: succeeded but its final attempt never finished")
        violations.extend(check_attempt_numbers(job_id, runs))
        violations.extend(check_overlaps(job_id, runs, run.faults))
        if kind == "snooze" and job["failures"] and not _outage_during(job, runs, run.faults):
            # A snoozing job fails only if its side-table writes did (the database away).
            violations.append(f"{job_id}: a snooze counted as a failure ({job['failures']})")
        parent = run.acknowledged.get(job_id, {}).get("parent")
        if parent is not None and parent in jobs:
            violations.extend(
                check_dependant(job_id, job, runs, jobs[parent], by_job.get(parent, []))
            )
    violations.extend(check_expired_identities(run, attempts))
    violations.extend(check_lock_keys(run, by_job))
    violations.extend(check_limited_queue(run, by_job))
    return violations


def check_limited_queue(run: Run, by_job: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """No attempt of the limited queue started while LIMITED_RUNNING others ran whose
    leases no fault could have cost (a killed, stopped or frozen holder, or a database
    restart, between its start and this one's: the database may have taken that attempt
    back, and then it no longer counted)."""
    runs = sorted(
        (
            r
            for job_id, info in run.acknowledged.items()
            if info["kind"] == "limited"
            for r in by_job.get(job_id, [])
        ),
        key=lambda r: r["started_at"],
    )
    violations = []
    for i, later in enumerate(runs):
        later_start = later["started_at"].timestamp()
        running = []
        for earlier in runs[:i]:
            end = attempt_end(earlier)
            if end is not None and end.timestamp() <= later_start:
                continue
            if not _lease_could_be_lost(earlier, later_start, run.faults):
                running.append(earlier)
        if len(running) >= LIMITED_RUNNING:
            violations.append(
                f"{later['job_id']}: started while {len(running)} jobs of queue"
                f" {LIMITED_QUEUE!r} ran (limit {LIMITED_RUNNING}) with no fault to explain it"
                f" [{', '.join(str(r['job_id']) for r in running)}]"
            )
    return violations


def check_lock_keys(run: Run, by_job: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Jobs sharing a lock key never ran at the same time, unless a fault explains it as
    for two attempts of one job (the holder's lease could have been lost)."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for job_id, info in run.acknowledged.items():
        if info.get("key") is not None:
            by_key.setdefault(info["key"], []).extend(by_job.get(job_id, []))
    violations = []
    for key, runs in by_key.items():
        ordered = sorted(runs, key=lambda r: r["started_at"])
        violations.extend(check_overlaps(f"lock key {key}", ordered, run.faults))
    return violations


def check_outcome(
    job_id: str, job: Mapping[str, Any], kind: str | None, cancel_result: bool | None
) -> list[str]:
    """Terminal, within its budgets, failed only once a budget is used up, and as the
    kind of job and the cancel calls say."""
    status = job["status"]
    if status not in ("succeeded", "failed", "cancelled"):
        return [f"{job_id}: never reached a terminal state ({status})"]
    violations = []
    failures, lost_leases = job["failures"], job["lost_leases"]
    if failures is not None and lost_leases is not None:
        if failures > job["max_retries"] + 1:
            violations.append(
                f"{job_id}: {failures} failures exceed 1 + max_retries ({job['max_retries']})"
            )
        if lost_leases > ORPHAN_RETRIES + 1:
            violations.append(
                f"{job_id}: {lost_leases} lost leases exceed 1 + orphan_retries ({ORPHAN_RETRIES})"
            )
        # A failure after a cancel request is final whatever the budget says.
        if (
            status == "failed"
            and not job.get("cancel_requested")
            and failures <= job["max_retries"]
            and lost_leases <= ORPHAN_RETRIES
        ):
            violations.append(
                f"{job_id}: failed with retries left ({failures} failures,"
                f" {lost_leases} lost leases)"
            )
    if kind in ALWAYS_FAILING and status != "failed":
        violations.append(f"{job_id}: a {kind!r} job raises on every attempt, yet {status}")
    if cancel_result and status != "cancelled":
        violations.append(f"{job_id}: cancel_job said True, status {status}")
    return violations


def check_dependant(
    job_id: str,
    job: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    parent: Mapping[str, Any],
    parent_runs: Sequence[Mapping[str, Any]],
) -> list[str]:
    """A dependant starts only after its parent's successful attempt ended, and is
    cancelled, never having run, when the parent did not succeed."""
    if parent["status"] != "succeeded":
        if job["status"] != "cancelled" or runs:
            return [
                f"{job_id}: its parent {parent['status']}, yet it is {job['status']}"
                f" after {len(runs)} run(s)"
            ]
        return []
    final = [r for r in parent_runs if r["attempt"] == parent["attempts"]]
    if not final or final[-1]["finished_at"] is None:
        return []  # reported for the parent
    return [
        f"{job_id}: attempt {r['attempt']} started before its parent succeeded"
        for r in runs
        if r["started_at"] < final[-1]["finished_at"]
    ]


def check_attempt_numbers(job_id: str, runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fencing token never repeats and grows with every claim: in start order, the
    attempt numbers of a job strictly increase."""
    violations = [
        f"{job_id}: attempt number {number} was used {n} times"
        for number, n in Counter(r["attempt"] for r in runs).items()
        if n > 1
    ]
    for earlier, later in itertools.pairwise(runs):
        if later["attempt"] < earlier["attempt"]:
            violations.append(
                f"{job_id}: attempt {later['attempt']} started after attempt {earlier['attempt']}"
            )
    return violations


def attempt_end(row: Mapping[str, Any]) -> datetime | None:
    """When the job's code stopped; None if it never said (killed, or the database away)."""
    ends = [row[c] for c in ("finished_at", "failed_at", "cancelled_at") if row[c] is not None]
    return min(ends) if ends else None


def _outage_during(
    job: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], faults: Sequence[Fault]
) -> bool:
    """Whether a database restart's outage overlapped the job's life or any of its attempts.
    An attempt whose very first side-table write failed (the database away) left no row, so
    the job's own span counts too."""
    created, finished = job.get("created_epoch"), job.get("finished_epoch")
    if created is not None:
        stop = finished if finished is not None else created + 3600
        if any(f.kind == "restart_db" and _outage_between(f, created, stop) for f in faults):
            return True
    for run in runs:
        start = run["started_at"].timestamp()
        end = attempt_end(run)
        stop = end.timestamp() if end is not None else start + 60
        if any(f.kind == "restart_db" and _outage_between(f, start, stop) for f in faults):
            return True
    return False


def _outage_between(fault: Fault, start: float, end: float) -> bool:
    """Whether a database restart's outage overlapped [start, end]."""
    return fault.at <= end and (fault.until or fault.at) >= start


def _attempt_facts(run: Mapping[str, Any], origin: float) -> str:
    """One attempt for a violation message, times relative to `origin`."""
    end = attempt_end(run)
    ended = f"{end.timestamp() - origin:+.2f}s" if end is not None else "never"
    return (
        f"attempt {run['attempt']} pid {run['pid']} worker {str(run.get('worker_id'))[:8]}"
        f" {run['started_at'].timestamp() - origin:+.2f}s..{ended}"
    )


def check_overlaps(
    job_id: str, runs: Sequence[Mapping[str, Any]], faults: Sequence[Fault]
) -> list[str]:
    """Two attempts of one job may overlap only if the earlier one's lease could have been
    lost between its start and the later one's start: its replica was killed, stopped or
    frozen in that window, or the database restarted in it. A fault before the earlier
    attempt started explains nothing: an attempt started after its replica's freeze ran
    under an expired lease (or a new identity) and must not overlap a peer's attempt.
    Consecutive pairs suffice: an attempt overlapping a later one overlaps the next one,
    over a shorter window."""
    violations = []
    for earlier, later in itertools.pairwise(runs):
        end = attempt_end(earlier)
        start, later_start = earlier["started_at"].timestamp(), later["started_at"].timestamp()
        if end is not None and end.timestamp() <= later_start:
            continue  # one after the other
        if not _lease_could_be_lost(earlier, later_start, faults):
            near = [
                f"{fault.kind}@{fault.at - start:+.2f}s(pid {fault.pid})"
                for fault in faults
                if start - 10 < fault.at < later_start + 10
            ]
            violations.append(
                f"{job_id}: attempts {earlier['attempt']} and"
                f" {later['attempt']} overlapped with no fault to explain it"
                f" [{_attempt_facts(earlier, start)}; {_attempt_facts(later, start)};"
                f" faults near: {', '.join(near) or 'none'}]"
            )
    return violations


def _lease_could_be_lost(
    earlier: Mapping[str, Any], later_start: float, faults: Sequence[Fault]
) -> bool:
    """Whether a fault between `earlier`'s start and `later_start` could have cost its
    lease: its replica killed, stopped or frozen, or the database restarted."""
    start = earlier["started_at"].timestamp()
    return any(
        _outage_between(fault, start, later_start)
        if fault.kind == "restart_db"
        else start < fault.at <= later_start and fault.pid == earlier["pid"]
        for fault in faults
    )


def check_expired_identities(run: Run, attempts: Sequence[Mapping[str, Any]]) -> list[str]:
    """A freeze outlasts the lease, so every identity its replica had used before it is
    dead when it resumes: nothing may start under one afterwards, overlap or not (the
    replica must fence itself and go on under a new identity). Identities known to
    predate a freeze: the one its process started with, and any that started an attempt
    before the freeze."""
    violations: list[str] = []
    for fault in run.faults:
        if fault.kind not in FREEZES:
            continue
        on_victim = [a for a in attempts if a["pid"] == fault.pid]
        expired = {worker for worker, pid in run.identities.items() if pid == fault.pid}
        expired |= {
            str(a["worker_id"]) for a in on_victim if a["started_at"].timestamp() < fault.at
        }
        violations.extend(
            f"{a['job_id']}: attempt {a['attempt']} started under worker {a['worker_id']}"
            f" after its lease ran out in the freeze of pid {fault.pid}"
            for a in on_victim
            if str(a["worker_id"]) in expired and a["started_at"].timestamp() > fault.at
        )
    return violations


def freeze_claiming_reach(run: Run, attempts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Evidence that the claim-time freezes hit what they aim at: attempts of the victim
    cut by the freeze, and attempts it started in the second after it resumed."""
    freezes = [f for f in run.faults if f.kind == "freeze_claiming"]
    cut = resumed = 0
    for fault in freezes:
        assert fault.until is not None
        for a in attempts:
            if a["pid"] != fault.pid:
                continue
            start, end = a["started_at"].timestamp(), attempt_end(a)
            cut += start < fault.at and (end is None or end.timestamp() > fault.at)
            resumed += fault.until <= start < fault.until + 1
    return {"freezes": len(freezes), "attempts_cut": cut, "attempts_started_on_resume": resumed}


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
    parser.add_argument(
        "--keep-logs",
        metavar="DIR",
        help="keep every replica's log there (replica-<pid>.log), to read what a violation's"
        " replica did (its pid is in the message)",
    )
    options = parser.parse_args()
    if options.keep_logs:
        os.makedirs(options.keep_logs, exist_ok=True)
        os.environ[KEEP_LOGS] = options.keep_logs  # inherited by Replica.stop
    cluster = ThrowawayCluster()
    cluster.start()
    run = Run()
    fleet = Fleet(cluster.dsn, options.replicas, run.identities)
    pool = await asyncpg.create_pool(cluster.dsn, min_size=2, max_size=8)
    assert pool is not None
    started = time.time()
    try:
        scheduler = Scheduler(pool, schema=SCHEMA)
        await scheduler.migrate()
        await pool.execute(side_jobs.side_table_sql(SCHEMA))
        fleet.ensure_running()
        if not fleet.live():  # no fault yet: a replica that cannot start never will
            raise RuntimeError(f"no replica started: {fleet.last_error}")
        stop_at = started + options.minutes * 60
        await asyncio.gather(
            produce(scheduler, run, stop_at, options.seed),
            inject_faults(scheduler, cluster, fleet, run, stop_at, options.seed),
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
                    " AND status IN ('pending', 'running', 'blocked')",
                    list(run.acknowledged),
                    SLOT_SCHEDULE,
                )
            except CONNECTION_ERRORS:
                open_jobs = -1
            if open_jobs == 0:
                break
            await asyncio.sleep(1)
        jobs = {r["job_id"]: dict(r) for r in await pool.fetch(JOB_FACTS_SQL.format(schema=SCHEMA))}
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
    unrecordable = [
        j for j, info in run.acknowledged.items() if info["kind"] in side_jobs.UNRECORDABLE
    ]
    summary = {
        "minutes": round((time.time() - started) / 60, 1),
        "replicas": options.replicas,
        "seed": options.seed,
        "jobs_acknowledged": len(run.acknowledged),
        "final_status": dict(Counter(jobs[j]["status"] for j in run.acknowledged if j in jobs)),
        "attempts_recorded": len(attempts),
        "cancel_calls": len(run.cancel_results),
        "dependants": dict(
            Counter(
                jobs[j]["status"]
                for j, info in run.acknowledged.items()
                if info["kind"] == "child" and j in jobs
            )
        ),
        "cancel_true": sum(run.cancel_results.values()),
        "faults": dict(Counter(f.kind for f in run.faults)),
        "freeze_claiming": freeze_claiming_reach(run, attempts),
        "burst_jobs": sum(info["kind"] == "burst" for info in run.acknowledged.values()),
        "keyed_final_status": dict(
            Counter(
                jobs[j]["status"]
                for j, info in run.acknowledged.items()
                if info.get("key") is not None and j in jobs
            )
        ),
        "limited_final_status": dict(
            Counter(
                jobs[j]["status"]
                for j, info in run.acknowledged.items()
                if info["kind"] == "limited" and j in jobs
            )
        ),
        "unrecordable_jobs": len(unrecordable),
        "unrecordable_by_kind": dict(Counter(run.acknowledged[j]["kind"] for j in unrecordable)),
        "unrecordable_final_status": dict(
            Counter(jobs[j]["status"] for j in unrecordable if j in jobs)
        ),
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
