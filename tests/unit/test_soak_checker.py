"""The chaos soak's checker must be able to fail: each kind of violation, fed to it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.chaos.soak import ORPHAN_RETRIES, Fault, Run, check, check_slots

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(
    status: str = "succeeded",
    attempts: int = 1,
    max_retries: int = 0,
    failures: int | None = 0,
    lost_leases: int | None = 0,
    cancel_requested: bool = False,
) -> dict[str, Any]:
    return {
        "status": status,
        "attempts": attempts,
        "max_retries": max_retries,
        "failures": failures,
        "lost_leases": lost_leases,
        "cancel_requested": cancel_requested,
    }


def attempt(
    n: int,
    pid: int,
    start: float,
    end: float | None,
    *,
    worker: str | None = None,
    ended: str = "finished_at",
) -> dict[str, Any]:
    row = {
        "job_id": "j",
        "attempt": n,
        "pid": pid,
        "worker_id": worker or f"worker-of-{pid}",
        "started_at": at(start),
        "finished_at": None,
        "failed_at": None,
        "cancelled_at": None,
    }
    if end is not None:
        row[ended] = at(end)
    return row


def run_with(*faults: Fault, kind: str = "ok") -> Run:
    run = Run()
    run.acknowledged["j"] = {"kind": kind}
    run.faults.extend(faults)
    return run


def fault(kind: str, seconds: float, pid: int | None = None) -> Fault:
    return Fault(at(seconds).timestamp(), kind, pid)


def test_a_clean_history_passes() -> None:
    history = [attempt(1, 10, 0, None), attempt(2, 11, 5, 6)]
    killed = fault("kill", 1, 10)
    assert check(run_with(killed), {"j": job(attempts=2, lost_leases=1)}, history) == []


def test_overlapping_attempts_without_a_fault_are_a_violation() -> None:
    history = [attempt(1, 10, 0, 4), attempt(2, 11, 2, 3)]
    [violation] = check(run_with(), {"j": job(attempts=2)}, history)
    assert "overlapped" in violation


def test_a_fault_before_the_earlier_attempt_started_explains_no_overlap() -> None:
    # The replica was frozen at 1 and resumed at 4; it then started attempt 1 under its
    # expired lease while a peer ran attempt 2: the freeze must not excuse that.
    history = [attempt(1, 10, 4.5, 9, worker="new"), attempt(2, 11, 6, 7)]
    frozen = Fault(at(1).timestamp(), "freeze_claiming", 10, at(4).timestamp())
    for explains_nothing in (frozen, fault("kill", 1, 10), fault("restart_db", 1)):
        [violation] = check(run_with(explains_nothing), {"j": job(attempts=2)}, history)
        assert "overlapped" in violation
    # Nor does a fault of the later attempt's replica.
    [violation] = check(run_with(fault("kill", 5, 11)), {"j": job(attempts=2)}, history)
    assert "overlapped" in violation


def test_a_freeze_while_an_attempt_ran_explains_its_overlap() -> None:
    # Attempt 1 was running when its replica froze; a peer took over, and attempt 1 only
    # noticed it was fenced (cancelled) after the resume.
    history = [attempt(1, 10, 0, 5, ended="cancelled_at"), attempt(2, 11, 3, 4)]
    frozen = Fault(at(1).timestamp(), "freeze_claiming", 10, at(4).timestamp())
    assert check(run_with(frozen), {"j": job(attempts=2, lost_leases=1)}, history) == []


def test_an_attempt_cancelled_before_the_next_started_did_not_overlap() -> None:
    # Fenced under load with no fault: fine as long as it stopped before the peer began.
    history = [attempt(1, 10, 0, 2, ended="cancelled_at"), attempt(2, 11, 3, 4)]
    assert check(run_with(), {"j": job(attempts=2, lost_leases=1)}, history) == []


def test_a_lost_or_unfinished_job_is_a_violation() -> None:
    assert "missing" in check(run_with(), {}, [])[0]
    assert "terminal" in check(run_with(), {"j": job("running")}, [attempt(1, 10, 0, None)])[0]


def test_a_false_success_is_a_violation() -> None:
    history = [attempt(1, 10, 0, None)]
    [violation] = check(run_with(fault("kill", 1, 10)), {"j": job()}, history)
    assert "never finished" in violation


def test_failures_beyond_max_retries_are_a_violation() -> None:
    history = [attempt(n, 10, n * 10, n * 10 + 1, ended="failed_at") for n in (1, 2, 3)]
    violations = check(
        run_with(), {"j": job("failed", attempts=3, max_retries=1, failures=3)}, history
    )
    assert violations == ["j: 3 failures exceed 1 + max_retries (1)"]


def test_lost_leases_beyond_orphan_retries_are_a_violation() -> None:
    lost = ORPHAN_RETRIES + 2
    history = [attempt(n, 10 + n, n * 10, None) for n in range(1, lost + 1)]
    kills = [fault("kill", n * 10 + 1, 10 + n) for n in range(1, lost + 1)]
    violations = check(
        run_with(*kills), {"j": job("failed", attempts=lost, lost_leases=lost)}, history
    )
    assert violations == [f"j: {lost} lost leases exceed 1 + orphan_retries ({ORPHAN_RETRIES})"]


def test_a_job_failed_with_retries_left_is_a_violation() -> None:
    history = [attempt(1, 10, 0, 1, ended="failed_at")]
    [violation] = check(
        run_with(kind="fail"), {"j": job("failed", max_retries=2, failures=1)}, history
    )
    assert "failed with retries left" in violation
    # A failure after a cancel request is final: not a violation.
    cancelled = job("failed", max_retries=2, failures=1, cancel_requested=True)
    assert check(run_with(kind="fail"), {"j": cancelled}, history) == []


def test_budget_columns_missing_from_the_jobs_table_are_a_violation() -> None:
    rows = {"j": job(failures=None, lost_leases=None)}
    [violation] = check(run_with(), rows, [attempt(1, 10, 0, 1)])
    assert "migration 0003" in violation


def test_a_job_with_an_unrecordable_outcome_must_end_failed() -> None:
    history = [attempt(1, 10, 0, 1, ended="failed_at")]
    stuck = check(run_with(kind="nul"), {"j": job("running")}, history)
    assert stuck == ["j: never reached a terminal state (running)"]
    [violation] = check(run_with(kind="huge"), {"j": job("succeeded")}, [attempt(1, 10, 0, 1)])
    assert "raises on every attempt" in violation
    assert check(run_with(kind="surrogate"), {"j": job("failed", failures=1)}, history) == []


def test_an_attempt_number_used_twice_is_a_violation() -> None:
    # A graceful release handed the job back and the number came again.
    history = [attempt(1, 10, 0, 1, ended="cancelled_at"), attempt(1, 11, 2, 3)]
    [violation] = check(run_with(), {"j": job()}, history)
    assert violation == "j: attempt number 1 was used 2 times"


def test_attempt_numbers_must_increase_in_start_order() -> None:
    # Attempt 1 was claimed before a freeze but only started after the resume, when the
    # peer's attempt 2 had already run.
    history = [attempt(2, 11, 3, 4), attempt(1, 10, 5, 6)]
    [violation] = check(run_with(), {"j": job(attempts=2, lost_leases=1)}, history)
    assert violation == "j: attempt 1 started after attempt 2"


def test_an_attempt_started_under_an_identity_that_a_freeze_expired_is_a_violation() -> None:
    frozen = Fault(at(10).timestamp(), "freeze_claiming", 10, at(13).timestamp())
    # No overlap needed: the replica resumed at 13 and started a job under the identity
    # it had before the freeze (the one it started with, or one seen running before).
    for identity_known_from in ("start", "an earlier attempt"):
        run = run_with(frozen)
        history = [attempt(1, 10, 13.1, 13.2, worker="old")]
        if identity_known_from == "start":
            run.identities["old"] = 10
        else:
            history.append({**attempt(1, 10, 9, 9.5, worker="old"), "job_id": "k"})
        violations = check(run, {"j": job()}, history)
        assert violations == [
            "j: attempt 1 started under worker old after its lease ran out in the freeze of pid 10"
        ]
    # A fresh identity taken after the resume may run jobs.
    run = run_with(frozen)
    run.identities["old"] = 10
    assert check(run, {"j": job()}, [attempt(1, 10, 13.1, 13.2, worker="new")]) == []


def test_a_cancel_reported_true_must_end_cancelled() -> None:
    run = run_with()
    run.cancel_results["j"] = True
    violations = check(run, {"j": job()}, [attempt(1, 10, 0, 1)])
    assert violations == ["j: cancel_job said True, status succeeded"]


def test_recurring_slots_must_be_one_job_each_with_none_missing() -> None:
    assert check_slots({"a": at(0), "b": at(1), "c": at(2)}) == []
    [duplicate] = check_slots({"a": at(0), "b": at(1), "b2": at(1)})
    assert "has 2 jobs" in duplicate
    [gap] = check_slots({"a": at(0), "b": at(1), "d": at(3)})
    assert "missing" in gap


def test_a_fired_slot_is_checked_like_an_acknowledged_job() -> None:
    run = Run()
    run.slot_jobs["s@0"] = at(0)
    violations = check(run, {"s@0": job(status="pending")}, [])
    assert any("never reached a terminal state" in v for v in violations)


def test_a_database_outage_that_spans_the_earlier_start_explains_the_overlap() -> None:
    # The restart command went out just before attempt 1's first line; the outage that
    # followed cost attempt 1 its end record (and its outcome), and attempt 2 ran.
    history = [attempt(1, 10, 0, None), attempt(2, 11, 0.8, 0.9)]
    restart = Fault(at(-0.02).timestamp(), "restart_db", None, at(1.5).timestamp())
    assert (
        check(run_with(restart), {"j": job(attempts=2, failures=1, max_retries=1)}, history) == []
    )
    over = Fault(at(-5).timestamp(), "restart_db", None, at(-3).timestamp())
    [violation] = check(run_with(over), {"j": job(attempts=2, failures=1, max_retries=1)}, history)
    assert "overlapped" in violation


def test_a_snooze_may_fail_only_when_the_database_was_away() -> None:
    history = [attempt(1, 10, 0, 1, ended="cancelled_at"), attempt(2, 10, 2, 3)]
    failed_once = {"j": job(attempts=2, failures=1, max_retries=1)}
    [violation] = check(run_with(kind="snooze"), failed_once, history)
    assert "snooze counted as a failure" in violation
    restart = Fault(at(0.5).timestamp(), "restart_db", None, at(1.5).timestamp())
    assert check(run_with(restart, kind="snooze"), failed_once, history) == []


def test_a_snooze_failed_by_an_outage_that_left_no_attempt_row_is_excused() -> None:
    # The attempt's first side-table write failed, so no row tells when it ran; the job's
    # own life (created .. finished) spans the outage.
    history = [attempt(2, 10, 2, 3)]
    failed_once = job(attempts=2, failures=1, max_retries=1)
    failed_once |= {"created_epoch": at(-1).timestamp(), "finished_epoch": at(3).timestamp()}
    restart = Fault(at(0).timestamp(), "restart_db", None, at(1).timestamp())
    assert check(run_with(restart, kind="snooze"), {"j": failed_once}, history) == []
    [violation] = check(run_with(kind="snooze"), {"j": failed_once}, history)
    assert "snooze counted as a failure" in violation


def limited_run(*faults: Fault) -> tuple[Run, dict[str, dict[str, Any]]]:
    run = Run()
    for job_id in ("a", "b", "c"):
        run.acknowledged[job_id] = {"kind": "limited"}
    run.faults.extend(faults)
    return run, {job_id: job() for job_id in ("a", "b", "c")}


def limited_attempt(job_id: str, pid: int, start: float, end: float) -> dict[str, Any]:
    return attempt(1, pid, start, end) | {"job_id": job_id}


def test_more_jobs_of_the_limited_queue_than_its_limit_at_once_are_a_violation() -> None:
    run, jobs = limited_run()
    history = [
        limited_attempt("a", 10, 0, 5),
        limited_attempt("b", 11, 1, 5),
        limited_attempt("c", 12, 2, 3),
    ]
    [violation] = check(run, jobs, history)
    assert "'limited'" in violation and violation.startswith("c:")
    # Two at once is the limit: one after the other is fine.
    history[2] = limited_attempt("c", 12, 5, 6)
    assert check(run, jobs, history) == []


def test_a_fault_of_a_holder_explains_one_more_limited_job() -> None:
    run, jobs = limited_run(fault("freeze", 1.5, 10))
    history = [
        limited_attempt("a", 10, 0, 5),
        limited_attempt("b", 11, 1, 5),
        limited_attempt("c", 12, 2, 3),
    ]
    assert check(run, jobs, history) == []
