"""An outcome has two homes: its class in scheduler/outcomes.py (its stored name, how the
store records it, the event it reports) and its branch in the SQL function end_attempts
(scheduler/postgres/functions/end_attempts.sql). Adding one touches those and their tests,
nothing else: these tests fail when another module starts telling outcomes apart."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path
from uuid import uuid4

import pytest

from scheduler import AttemptOutcome as PublicAttemptOutcome
from scheduler import outcomes
from scheduler.error_text import ErrorParts
from scheduler.events import ATTEMPT_ENDINGS, EventKind, JobEvent
from scheduler.lease import Lease
from scheduler.models import AttemptOutcome as ModelsAttemptOutcome
from scheduler.outcomes import (
    RECORDED_BY_THE_STORE,
    AttemptOutcome,
    CancelReason,
    Failed,
    Interrupted,
    Outcome,
    Snoozed,
    Succeeded,
)

PACKAGE = Path(outcomes.__file__).resolve().parent
END_ATTEMPTS = PACKAGE / "postgres" / "functions" / "end_attempts.sql"

#: At least one of each outcome class, and one per stored name it can record. A new class
#: fails `test_every_outcome_class_has_examples` until it has its lines here.
EXAMPLES: list[Outcome] = [
    Succeeded('{"answer": 42}'),
    Succeeded(),
    Failed("Traceback ...\nValueError: no", parts=ErrorParts("ValueError", "no")),
    Failed("timed out after 1.0 seconds", timed_out=True),
    *(Interrupted(reason) for reason in CancelReason),
    Snoozed(2.5),
]


def _stored_names_in_end_attempts() -> list[str]:
    """The names end_attempts() accepts: its one list of outcomes."""
    text = END_ATTEMPTS.read_text()
    match = re.search(r"known_outcomes\s+CONSTANT\s+text\[\]\s*:=\s*ARRAY\[(.*?)\];", text, re.S)
    assert match, "end_attempts.sql: the list `known_outcomes CONSTANT text[] := ARRAY[...]`"
    return re.findall(r"'([^']*)'", match[1])


def test_the_public_name_is_the_one_defined_with_the_outcomes() -> None:
    assert PublicAttemptOutcome is ModelsAttemptOutcome is AttemptOutcome


def test_every_outcome_class_has_examples() -> None:
    assert {type(example) for example in EXAMPLES} == set(typing.get_args(Outcome))


@pytest.mark.parametrize("outcome", EXAMPLES, ids=repr)
def test_an_outcome_says_how_it_is_recorded_and_what_it_reports(outcome: Outcome) -> None:
    lease = Lease("job-1", uuid4(), 3)
    end = outcome.ending(lease, 1.5)
    assert end.lease == lease
    assert isinstance(end.outcome, AttemptOutcome)
    for retries_left in (True, False):
        report = outcome.report(retries_left=retries_left)
        assert report.kind in ATTEMPT_ENDINGS
        assert JobEvent(report.kind, "job-1", attempt=3).ends_attempt


def test_every_stored_name_is_recorded_by_an_outcome_or_by_the_store() -> None:
    by_classes = {example.ending(Lease("j", uuid4(), 1), 0.0).outcome for example in EXAMPLES}
    assert by_classes | RECORDED_BY_THE_STORE == set(AttemptOutcome)
    assert not by_classes & RECORDED_BY_THE_STORE


def test_end_attempts_knows_exactly_the_stored_names() -> None:
    named = _stored_names_in_end_attempts()
    assert sorted(named) == sorted(member.value for member in AttemptOutcome)
    text = END_ATTEMPTS.read_text()
    for name in named:  # each has its branch, not only its place in the list
        assert text.count(f"'{name}'") >= 2, f"end_attempts.sql: no branch for {name!r}"


def test_failures_report_retried_or_failed_and_the_rest_ignore_the_budget() -> None:
    failed = Failed("boom", parts=ErrorParts("RuntimeError", "boom"))
    assert failed.report(retries_left=True).kind is EventKind.RETRIED
    assert failed.report(retries_left=False).kind is EventKind.FAILED
    assert failed.report(retries_left=True).parts == ErrorParts("RuntimeError", "boom")
    assert Snoozed(1.0).report(retries_left=False).kind is EventKind.SNOOZED
    assert Interrupted(CancelReason.REQUESTED).report(retries_left=True).kind is (
        EventKind.CANCELLED
    )


def test_the_attempt_ending_kinds_are_not_listed_by_outcome() -> None:
    # Only the kinds that end no attempt are listed; the rest follow from EventKind.
    assert frozenset(EventKind) - ATTEMPT_ENDINGS == {
        EventKind.SCHEDULED,
        EventKind.STARTED,
        EventKind.SCHEDULE_FIRED,
    }


def _outcome_names_used(module: Path) -> set[str]:
    """The outcome classes and AttemptOutcome members a module names."""
    classes = {cls.__name__ for cls in typing.get_args(Outcome)}
    members = {member.name for member in AttemptOutcome}
    used: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "scheduler.outcomes":
            used |= {alias.name for alias in node.names} & classes
        elif isinstance(node, ast.Name) and node.id in classes:
            used.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in members
            and isinstance(node.value, ast.Name)
            and node.value.id == "AttemptOutcome"
        ):
            used.add(f"AttemptOutcome.{node.attr}")
    return used


@pytest.mark.parametrize(
    "module", ["observing.py", "events.py", "metrics.py", "tracing.py", "models.py", "store.py"]
)
def test_the_observers_and_the_port_tell_no_outcome_apart(module: str) -> None:
    """observing emits what `report()` says, events and metrics follow the event kind, and
    the models and the port only carry the names: none of them maps outcomes one by one."""
    assert _outcome_names_used(PACKAGE / module) == set()
