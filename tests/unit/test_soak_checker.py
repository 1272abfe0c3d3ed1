"""The chaos soak's checker must be able to fail: each kind of violation, fed to it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.chaos.soak import Fault, Run, check, check_slots

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(status: str = "succeeded", attempts: int = 1, max_retries: int = 0) -> dict[str, Any]:
    return {"status": status, "attempts": attempts, "max_retries": max_retries}


def attempt(n: int, pid: int, start: float, end: float | None) -> dict[str, Any]:
    return {
        "job_id": "j",
        "attempt": n,
        "pid": pid,
        "started_at": at(start),
        "finished_at": None if end is None else at(end),
        "failed_at": None,
    }


def run_with(*faults: Fault) -> Run:
    run = Run()
    run.acknowledged["j"] = {"kind": "ok"}
    run.faults.extend(faults)
    return run


def test_a_clean_history_passes() -> None:
    history = [attempt(1, 10, 0, None), attempt(2, 11, 5, 6)]
    killed = Fault(at(1).timestamp(), "kill", 10)
    assert check(run_with(killed), {"j": job(attempts=2)}, history) == []


def test_overlapping_attempts_without_a_fault_are_a_violation() -> None:
    history = [attempt(1, 10, 0, 4), attempt(2, 11, 2, 3)]
    [violation] = check(run_with(), {"j": job(attempts=2)}, history)
    assert "overlapped" in violation


def test_a_lost_or_unfinished_job_is_a_violation() -> None:
    assert "missing" in check(run_with(), {}, [])[0]
    assert "terminal" in check(run_with(), {"j": job("running")}, [attempt(1, 10, 0, None)])[0]


def test_too_many_attempts_and_a_false_success_are_violations() -> None:
    history = [attempt(n, 10 + n, n * 10, None) for n in range(1, 5)]
    faults = [Fault(at(n * 10 + 1).timestamp(), "kill", 10 + n) for n in range(1, 5)]
    violations = check(run_with(*faults), {"j": job(attempts=4)}, history)
    assert any("exceed" in v for v in violations)
    assert any("never finished" in v for v in violations)


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
