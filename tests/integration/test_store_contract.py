"""The contract of the storage port's claim and lease part (`scheduler.store.JobStore`):
one set of behaviour tests, run against every store implementation we have, each through
the port only (jobs are inserted, limits set and workers registered through it too).

Implementations: PostgresJobStore on a direct asyncpg pool, and the same behind PgBouncer
in transaction mode (configured as docs/scale.md says: no statement cache). A new store
joins by adding a factory to STORES.

What the policy above the port decides (which claim runs when, retries, logging) is
tests/unit/test_claiming.py's."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Protocol

import anyio
import asyncpg
import pytest

from scheduler import ConflictResolution, JobPriority, JobStatus
from scheduler.flow import Limits
from scheduler.postgres.store import PostgresJobStore
from scheduler.store import ClaimResult, JobStore, NewJob, Success
from tests.support.pgbouncer import PgBouncer

TASK = "contract:task"
OTHER = "contract:other"


class StoreFactory(Protocol):
    def __call__(
        self, request: pytest.FixtureRequest, pool: asyncpg.Pool, schema: str
    ) -> AbstractAsyncContextManager[JobStore]: ...


@asynccontextmanager
async def direct(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, schema: str
) -> AsyncIterator[JobStore]:
    store = PostgresJobStore(pool, schema)
    try:
        yield store
    finally:
        await store.release_connections()


@asynccontextmanager
async def through_pgbouncer(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, schema: str
) -> AsyncIterator[JobStore]:
    bouncer: PgBouncer = request.getfixturevalue("contract_pgbouncer")
    bounced = await asyncpg.create_pool(bouncer.dsn, min_size=1, max_size=4, statement_cache_size=0)
    assert bounced is not None
    store = PostgresJobStore(bounced, schema)
    try:
        yield store
    finally:
        await store.release_connections()
        await bounced.close()


STORES: dict[str, StoreFactory] = {"postgres": direct, "postgres-pgbouncer": through_pgbouncer}


@pytest.fixture(scope="module")
def contract_pgbouncer() -> Iterator[PgBouncer]:
    """One PgBouncer for the module's tests (each test still has its own schema)."""
    bouncer = PgBouncer()
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(params=sorted(STORES))
async def store(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, migrated: str
) -> AsyncIterator[JobStore]:
    async with STORES[request.param](request, pool, migrated) as store:
        yield store


#: The two claim statements of the port, by name: most rules hold for both.
PATHS = ["claim_jobs", "claim_flow_jobs"]
Claim = Callable[..., Awaitable[ClaimResult]]


def path_of(store: JobStore, name: str) -> Claim:
    claim: Claim = getattr(store, name)
    return claim


def new_job(
    job_id: str,
    *,
    task: str = TASK,
    priority: JobPriority = JobPriority.NORMAL,
    queue: str = "default",
    due: datetime | None = None,
    lock_key: str | None = None,
) -> NewJob:
    return NewJob(
        job_id=job_id,
        task_name=task,
        args_json="[]",
        kwargs_json="{}",
        priority=priority,
        execution_time=due,
        delay_seconds=None if due is not None else 0.0,
        max_retries=0,
        timeout=None,
        queue=queue,
        lock_key=lock_key,
    )


async def add(store: JobStore, *jobs: NewJob) -> None:
    await store.insert_jobs(jobs, ConflictResolution.RAISE)


async def worker(
    store: JobStore,
    queues: Sequence[str] = ("default",),
    tasks: Sequence[str] = (TASK, OTHER),
    lease_time: float = 30.0,
) -> uuid.UUID:
    owner = uuid.uuid4()
    await store.register_worker(owner, "contract-host", 1, tasks, lease_time, queues)
    return owner


def ids(result: ClaimResult) -> list[str]:
    return [job.lease.job_id for job in result.claimed]


async def status(store: JobStore, job_id: str) -> JobStatus | None:
    return await store.job_status(job_id)


# -- claiming ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_a_claim_takes_at_most_its_limit_and_hands_out_leases(
    store: JobStore, path: str
) -> None:
    await add(store, *(new_job(f"j{n}") for n in range(5)))
    owner = await worker(store)
    result = await path_of(store, path)(owner, [TASK], 3)
    assert len(result.claimed) == 3
    for job in result.claimed:
        assert (job.lease.owner, job.lease.attempt, job.task_name) == (owner, 1, TASK)
        assert await status(store, job.lease.job_id) is JobStatus.RUNNING
    rest = await path_of(store, path)(owner, [TASK], 10)
    assert sorted(ids(result) + ids(rest)) == [f"j{n}" for n in range(5)]
    assert (await path_of(store, path)(owner, [TASK], 10)).claimed == []


@pytest.mark.parametrize("path", PATHS)
async def test_a_claim_takes_only_its_queues_and_tasks(store: JobStore, path: str) -> None:
    await add(
        store,
        new_job("mine"),
        new_job("other-queue", queue="elsewhere"),
        new_job("other-task", task=OTHER),
    )
    owner = await worker(store, queues=["default", "elsewhere"])
    result = await path_of(store, path)(owner, [TASK], 10, 0.0, ["default"])
    assert ids(result) == ["mine"]
    assert result.claimed[0].queue == "default"
    assert await status(store, "other-queue") is JobStatus.PENDING
    assert await status(store, "other-task") is JobStatus.PENDING


@pytest.mark.parametrize("path", PATHS)
async def test_a_claim_takes_the_highest_priority_then_the_earliest_due_first(
    store: JobStore, path: str
) -> None:
    now = datetime.now(timezone.utc)
    await add(
        store,
        new_job("low", priority=JobPriority.LOW, due=now - timedelta(seconds=30)),
        new_job("normal-later", due=now - timedelta(seconds=5)),
        new_job("critical", priority=JobPriority.CRITICAL, due=now - timedelta(seconds=1)),
        new_job("normal-earlier", due=now - timedelta(seconds=10)),
        new_job("high", priority=JobPriority.HIGH, due=now - timedelta(seconds=2)),
    )
    owner = await worker(store)
    assert ids(await path_of(store, path)(owner, [TASK], 1)) == ["critical"]
    assert ids(await path_of(store, path)(owner, [TASK], 10)) == [
        "high",
        "normal-earlier",
        "normal-later",
        "low",
    ]


@pytest.mark.parametrize("path", PATHS)
async def test_a_job_due_later_is_claimed_only_within_the_lead(store: JobStore, path: str) -> None:
    await add(store, new_job("soon", due=datetime.now(timezone.utc) + timedelta(seconds=2)))
    owner = await worker(store)
    assert (await path_of(store, path)(owner, [TASK], 10, 0.0)).claimed == []
    [job] = (await path_of(store, path)(owner, [TASK], 10, 30.0)).claimed
    assert job.lease.job_id == "soon" and 0 < job.starts_in <= 2


@pytest.mark.parametrize("path", PATHS)
async def test_a_worker_whose_lease_expired_or_that_never_registered_claims_nothing(
    store: JobStore, path: str
) -> None:
    await add(store, new_job("j"))
    expired = await worker(store, lease_time=0.05)
    await anyio.sleep(0.2)  # past the lease, by the database clock too
    assert (await path_of(store, path)(expired, [TASK], 10)).claimed == []
    assert (await path_of(store, path)(uuid.uuid4(), [TASK], 10)).claimed == []
    assert await status(store, "j") is JobStatus.PENDING


# -- successes, fenced ------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_a_carried_success_is_written_only_for_its_owner_and_attempt(
    store: JobStore, path: str
) -> None:
    await add(store, new_job("j"))
    owner = await worker(store)
    [job] = (await path_of(store, path)(owner, [TASK], 10)).claimed
    claim = path_of(store, path)
    stale = [Success("j", uuid.uuid4(), 1, None), Success("j", owner, 2, None)]
    result = await claim(owner, [TASK], 0, 0.0, ("default",), stale)
    assert result.completed == frozenset()
    assert await status(store, "j") is JobStatus.RUNNING

    done = Success("j", owner, job.lease.attempt, json.dumps({"answer": 42}))
    result = await claim(owner, [TASK], 10, 0.0, ("default",), [done])
    assert result.completed == frozenset({"j"})
    stored = await store.get_job("j")
    assert stored is not None
    assert (stored.status, stored.result) == (JobStatus.SUCCEEDED, {"answer": 42})
    again = await claim(owner, [TASK], 10, 0.0, ("default",), [done])
    assert again.completed == frozenset()  # the attempt is over: written once


async def test_a_claim_records_what_it_carries_and_claims_the_next_in_one_call(
    store: JobStore,
) -> None:
    await add(store, new_job("first"))
    owner = await worker(store)
    [job] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    await add(store, new_job("second"))
    success = Success("first", owner, job.lease.attempt, None)
    result = await store.claim_jobs(owner, [TASK], 10, 0.0, ("default",), [success])
    assert (result.completed, ids(result)) == (frozenset({"first"}), ["second"])


async def test_record_successes_writes_only_the_attempts_still_held(store: JobStore) -> None:
    await add(store, new_job("a"), new_job("b"), new_job("c"))
    owner = await worker(store)
    claimed = {j.lease.job_id: j.lease for j in (await store.claim_jobs(owner, [TASK], 10)).claimed}
    written = await store.record_successes(
        [
            Success("a", owner, claimed["a"].attempt, "1"),
            Success("b", uuid.uuid4(), claimed["b"].attempt, None),  # not its owner
            Success("c", owner, claimed["c"].attempt + 1, None),  # not its attempt
            Success("unknown", owner, 1, None),
        ]
    )
    assert written == {"a"}
    assert await store.record_successes([Success("a", owner, claimed["a"].attempt)]) == set()
    assert [await status(store, j) for j in "abc"] == [
        JobStatus.SUCCEEDED,
        JobStatus.RUNNING,
        JobStatus.RUNNING,
    ]


# -- leases -----------------------------------------------------------------------------


async def test_the_heartbeat_reports_the_attempts_the_worker_holds(store: JobStore) -> None:
    await add(store, new_job("a"), new_job("b"))
    owner = await worker(store)
    beat = await store.heartbeat(owner, [TASK], 30.0, ["default"])
    assert beat.alive and beat.owned == frozenset()
    claimed = (await store.claim_jobs(owner, [TASK], 10)).claimed
    beat = await store.heartbeat(owner, [TASK], 30.0, ["default"])
    assert beat.owned == frozenset({("a", 1), ("b", 1)})
    [a] = [job for job in claimed if job.lease.job_id == "a"]
    await store.record_successes([Success("a", owner, a.lease.attempt)])
    beat = await store.heartbeat(owner, [TASK], 30.0, ["default"])
    assert beat.owned == frozenset({("b", 1)})
    other = await store.heartbeat(await worker(store), [TASK], 30.0, ["default"])
    assert other.owned == frozenset()


async def test_the_heartbeat_of_an_expired_lease_says_so(store: JobStore) -> None:
    owner = await worker(store, lease_time=0.05)
    await anyio.sleep(0.2)
    beat = await store.heartbeat(owner, [TASK], 30.0, ["default"])
    assert beat.alive is False


# -- flow control -----------------------------------------------------------------------


async def test_the_plain_claim_leaves_work_under_flow_control_to_the_flow_claim(
    store: JobStore,
) -> None:
    await store.set_queue_limits("limited", Limits(concurrency_limit=2))
    await add(store, new_job("free"), *(new_job(f"l{n}", queue="limited") for n in range(4)))
    owner = await worker(store, queues=["default", "limited"])
    queues = ["default", "limited"]
    # Without the limited queue, the plain claim takes the free job and sees no flow.
    alone = await store.claim_jobs(owner, [TASK], 10, 0.0, ["default"])
    assert (ids(alone), alone.flow) == (["free"], False)
    await add(store, new_job("free-2"))
    # With it, flow control concerns this worker: the plain claim takes nothing and says
    # so, and the flow claim takes the free job with the limited ones.
    plain = await store.claim_jobs(owner, [TASK], 10, 0.0, queues)
    assert (ids(plain), plain.flow) == ([], True)
    flow = await store.claim_flow_jobs(owner, [TASK], 10, 0.0, queues)
    assert len(flow.claimed) == 3 and flow.flow  # the limit, and it still concerns us
    assert sorted(job.queue for job in flow.claimed) == ["default", "limited", "limited"]
    assert (await store.claim_flow_jobs(owner, [TASK], 10, 0.0, queues)).claimed == []
    # One of the limited ones ends: room for exactly one more.
    first = next(job for job in flow.claimed if job.queue == "limited")
    done = Success(first.lease.job_id, owner, first.lease.attempt)
    again = await store.claim_flow_jobs(owner, [TASK], 10, 0.0, queues, [done])
    assert again.completed == frozenset({done.job_id}) and len(again.claimed) == 1


async def test_without_limits_the_plain_claim_says_no_flow_and_the_flow_claim_not_controlled(
    store: JobStore,
) -> None:
    await add(store, new_job("a"), new_job("b"))
    owner = await worker(store)
    plain = await store.claim_jobs(owner, [TASK], 1)
    assert (len(plain.claimed), plain.flow, plain.retry_in) == (1, False, None)
    flow = await store.claim_flow_jobs(owner, [TASK], 10)
    assert (len(flow.claimed), flow.flow, flow.limit_problems) == (1, False, frozenset())


async def test_jobs_sharing_a_lock_key_are_claimed_one_at_a_time(store: JobStore) -> None:
    await add(store, new_job("k1", lock_key="k"), new_job("k2", lock_key="k"))
    owner = await worker(store)
    plain = await store.claim_jobs(owner, [TASK], 10)
    assert (plain.claimed, plain.flow) == ([], True)
    [first] = (await store.claim_flow_jobs(owner, [TASK], 10)).claimed
    assert (await store.claim_flow_jobs(owner, [TASK], 10)).claimed == []
    await store.record_successes([Success(first.lease.job_id, owner, first.lease.attempt)])
    assert len((await store.claim_flow_jobs(owner, [TASK], 10)).claimed) == 1


async def test_a_rate_limit_that_holds_work_back_says_when_a_token_comes(store: JobStore) -> None:
    await store.set_queue_limits("default", Limits(rate_limit=1, rate_period=3600, rate_burst=1))
    await add(store, new_job("a"), new_job("b"))
    owner = await worker(store)
    first = await store.claim_flow_jobs(owner, [TASK], 10)
    assert len(first.claimed) == 1
    held = await store.claim_flow_jobs(owner, [TASK], 10)
    assert held.claimed == [] and held.flow
    assert held.retry_in is not None and 0 < held.retry_in <= 3600
