"""The claim policy (`scheduler.services.claiming.Claims`) over a scripted store: which
statement runs, what a claim's flow facts mean for the next, and the successes a claim
carries. The statements themselves: tests/integration/test_store_contract.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import anyio
import pytest

from scheduler.services.claiming import FLOW_RETRY_SECONDS, Claims
from scheduler.services.completions import CompletionBatcher
from scheduler.store import ClaimedJob, ClaimResult, Lease, Success

OWNER = uuid.uuid4()
TASK = "t"
PROBLEM_LOG = "out-of-range limit row"


def jobs(*ids: str) -> list[ClaimedJob]:
    return [ClaimedJob(Lease(job_id, OWNER, 1), TASK, "[]", "{}", 0, None) for job_id in ids]


@dataclass
class Call:
    path: str  # "plain" or "flow"
    limit: int
    carried: list[str]


@dataclass
class ScriptedStore:
    """Answers each claim with the next scripted result (or raises it), checking that the
    policy chose the scripted path; records standalone success writes."""

    script: list[tuple[str, ClaimResult | BaseException]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    recorded: list[list[str]] = field(default_factory=list)

    async def _next(self, path: str, limit: int, carried: Sequence[Success]) -> ClaimResult:
        self.calls.append(Call(path, limit, [s.job_id for s in carried]))
        assert self.script, f"unscripted {path} claim"
        expected, result = self.script.pop(0)
        assert path == expected, f"the policy ran the {path} claim, the script says {expected}"
        if isinstance(result, BaseException):
            raise result
        return result

    async def claim_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        return await self._next("plain", limit, carried)

    async def claim_flow_jobs(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
        carried: Sequence[Success] = (),
    ) -> ClaimResult:
        return await self._next("flow", limit, carried)

    async def record_successes(self, successes: Sequence[Success]) -> set[str]:
        self.recorded.append([s.job_id for s in successes])
        return {s.job_id for s in successes}


async def claim(claims: Claims, limit: int = 5) -> list[str]:
    return [job.lease.job_id for job in await claims.claim(OWNER, [TASK], limit)]


async def test_a_plain_claim_that_says_flow_is_followed_by_the_flow_claim_for_the_rest() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("a", "b"), flow=True)),
            ("flow", ClaimResult(jobs("c"), flow=True)),
        ]
    )
    assert await claim(Claims(store), limit=5) == ["a", "b", "c"]
    assert [(c.path, c.limit) for c in store.calls] == [("plain", 5), ("flow", 3)]


async def test_a_full_plain_claim_is_not_followed_but_the_next_claim_takes_the_flow_path() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("a", "b"), flow=True)),
            ("flow", ClaimResult(jobs("c"), flow=True)),
        ]
    )
    claims = Claims(store)
    assert await claim(claims, limit=2) == ["a", "b"]
    assert await claim(claims, limit=2) == ["c"]
    assert [(c.path, c.limit) for c in store.calls] == [("plain", 2), ("flow", 2)]


async def test_the_flow_path_sticks_until_a_flow_claim_says_flow_no_longer_concerns_us() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult([], flow=True)),
            ("flow", ClaimResult([], flow=True)),
            ("flow", ClaimResult(jobs("a"), flow=True)),
            ("flow", ClaimResult(jobs("b"), flow=False)),  # the limits were removed
            ("plain", ClaimResult(jobs("c"), flow=False)),
            ("plain", ClaimResult([], flow=False)),
        ]
    )
    claims = Claims(store)
    for _ in range(5):
        await claim(claims)
    assert [c.path for c in store.calls] == ["plain", "flow", "flow", "flow", "plain", "plain"]
    assert store.script == []


async def test_a_plain_claim_that_says_no_flow_is_not_followed() -> None:
    store = ScriptedStore([("plain", ClaimResult(jobs("a"), flow=False))])
    claims = Claims(store)
    assert await claim(claims) == ["a"]
    assert claims.held_back_retry is None
    assert [c.path for c in store.calls] == ["plain"]


@pytest.mark.parametrize(
    ("results", "retry"),
    [
        ([("plain", ClaimResult([], flow=False))], None),
        # Flow control concerns us, no rate limit says when: the floor.
        (
            [("plain", ClaimResult([], flow=True)), ("flow", ClaimResult([], flow=True))],
            FLOW_RETRY_SECONDS,
        ),
        # A rate limit's token comes sooner than the floor: then.
        (
            [
                ("plain", ClaimResult([], flow=True)),
                ("flow", ClaimResult([], flow=True, retry_in=0.03)),
            ],
            0.03,
        ),
        # ... or later: the floor still (a peer's job may end and free room meanwhile).
        (
            [
                ("plain", ClaimResult([], flow=True)),
                ("flow", ClaimResult([], flow=True, retry_in=5.0)),
            ],
            FLOW_RETRY_SECONDS,
        ),
        # The flow claim says flow no longer concerns us: no held-back retry.
        (
            [
                ("plain", ClaimResult([], flow=True)),
                ("flow", ClaimResult([], flow=False, retry_in=0.03)),
            ],
            None,
        ),
        # A full plain claim that says flow: not followed, the floor.
        ([("plain", ClaimResult(jobs("a"), flow=True))], FLOW_RETRY_SECONDS),
    ],
)
async def test_the_held_back_retry(
    results: list[tuple[str, ClaimResult]], retry: float | None
) -> None:
    claims = Claims(ScriptedStore(list(results)))
    await claim(claims, limit=1)
    assert claims.held_back_retry == retry


async def test_each_limit_problem_is_logged_once_until_it_is_fixed_and_breaks_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler.store")
    a, b = "queue 'x': bad", "task 't': bad"
    store = ScriptedStore(
        [
            # A plain claim that says flow leaves the problems to the flow claim after it.
            ("plain", ClaimResult([], flow=True)),
            ("flow", ClaimResult([], flow=True, limit_problems=frozenset({a}))),
            ("flow", ClaimResult([], flow=True, limit_problems=frozenset({a}))),
            ("flow", ClaimResult([], flow=True, limit_problems=frozenset({a, b}))),
            ("flow", ClaimResult([], flow=True, limit_problems=frozenset({b}))),  # a fixed
            ("flow", ClaimResult([], flow=True, limit_problems=frozenset({a, b}))),  # a broke again
            ("flow", ClaimResult([], flow=False)),  # all fixed, and no flow control left
            ("plain", ClaimResult([], flow=False)),
        ]
    )
    claims = Claims(store)
    for _ in range(7):
        await claim(claims)
    logged = [r.getMessage() for r in caplog.records if PROBLEM_LOG in r.getMessage()]
    assert [a in m for m in logged] == [True, False, True]
    assert [b in m for m in logged] == [False, True, False]
    assert store.script == []


async def test_waiting_successes_ride_along_with_the_claim_and_learn_what_was_written() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("n1", "n2"))),
            ("plain", ClaimResult(jobs("n3"), completed=frozenset({"s1"}))),
        ]
    )
    batcher = CompletionBatcher[Success](store.record_successes, max_hold=60.0)
    claims = Claims(store, batcher)
    assert await claim(claims, limit=2) == ["n1", "n2"]
    assert batcher.hold  # a full claim: a backlog, successes wait for the next claim
    results: dict[str, bool] = {}

    async def complete(job_id: str) -> None:
        results[job_id] = await batcher.complete(Success(job_id, OWNER, 1, "null"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete, "s1")
        tg.start_soon(complete, "s2")
        await anyio.wait_all_tasks_blocked()
        assert await claim(claims, limit=2) == ["n3"]
    assert store.calls[1].carried == ["s1", "s2"]
    assert results == {"s1": True, "s2": False}  # s2 was fenced
    assert store.recorded == []  # nobody committed on their own
    assert not batcher.hold  # the claim was not full: the next successes write at once


async def test_a_failed_claim_hands_its_error_to_the_successes_it_carried() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("n1"))),
            ("plain", ConnectionResetError("the connection dropped")),
        ]
    )
    batcher = CompletionBatcher[Success](store.record_successes, max_hold=60.0)
    claims = Claims(store, batcher)
    await claim(claims, limit=1)
    assert batcher.hold
    failures: list[BaseException] = []

    async def complete() -> None:
        try:
            await batcher.complete(Success("s1", OWNER, 1))
        except ConnectionResetError as exc:  # the runner retries the write on its own
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ConnectionResetError):
            await claim(claims, limit=1)
    assert len(failures) == 1
    assert store.calls[1].carried == ["s1"]


async def test_successes_carried_by_a_cancelled_claim_write_themselves() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("n1"))),
            ("plain", anyio.get_cancelled_exc_class()()),
        ]
    )
    batcher = CompletionBatcher[Success](store.record_successes, max_hold=60.0)
    claims = Claims(store, batcher)
    await claim(claims, limit=1)
    results: list[bool] = []

    async def complete() -> None:
        results.append(await batcher.complete(Success("s1", OWNER, 1)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await claim(claims, limit=1)
        batcher.hold = False  # no claim will come (the dispatcher stopped)
    assert results == [True]
    assert store.recorded == [["s1"]]


async def test_the_follow_up_flow_claim_carries_nothing() -> None:
    store = ScriptedStore(
        [
            ("plain", ClaimResult(jobs("n1"))),
            ("plain", ClaimResult([], flow=True, completed=frozenset({"s1"}))),
            ("flow", ClaimResult(jobs("n2"), flow=True)),
        ]
    )
    batcher = CompletionBatcher[Success](store.record_successes, max_hold=60.0)
    claims = Claims(store, batcher)
    await claim(claims, limit=1)  # full: successes are held for the next claim

    async def complete() -> None:
        assert await batcher.complete(Success("s1", OWNER, 1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        await anyio.wait_all_tasks_blocked()
        assert await claim(claims, limit=2) == ["n2"]
    assert [(c.path, c.carried) for c in store.calls[1:]] == [("plain", ["s1"]), ("flow", [])]
