"""Leases, heartbeats, fencing and orphan recovery, driven one step at a time."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import asyncpg
import pytest

from scheduler import AttemptOutcome, ConflictResolution, JobStatus
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PRIORITIES_DESCENDING, PostgresJobStore
from scheduler.running_jobs import RunningJob, RunningJobs, WorkerIdentity
from scheduler.services.claiming import Claims
from scheduler.services.dispatcher import Dispatcher
from scheduler.services.heartbeat import Heartbeat
from scheduler.store import AttemptEnd, JobStore, Lease
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.claims import complete
from tests.support.db import holds, unique_schema, wait_until

TASK = "tests.support.jobs:record"
#: The owner a claim of zero rows names (it never reaches a row).
NO_OWNER = uuid.UUID(int=0)


async def end(
    store: PostgresJobStore, lease: Lease, outcome: AttemptOutcome, error: str = "e"
) -> JobStatus | None:
    """End one attempt through the store's one outcome write; None when fenced."""
    ended = await store.end_attempts([AttemptEnd(lease, outcome, error=error)])
    return ended.get(lease.job_id)


async def expire_lease(pool: asyncpg.Pool, schema: str, worker: uuid.UUID) -> None:
    await pool.execute(
        f"UPDATE {quote_identifier(schema)}.workers"
        " SET lease_expires_at = now() - interval '1 second' WHERE worker_id = $1",
        worker,
    )


@pytest.fixture
async def store(pool: asyncpg.Pool, migrated: str) -> PostgresJobStore:
    return PostgresJobStore(pool, migrated)


async def enqueue(make_scheduler: SchedulerFactory, **kwargs: object) -> str:
    return await make_scheduler().schedule(jobs.record, args=("k",), **kwargs)  # type: ignore[arg-type]


async def register(store: PostgresJobStore) -> uuid.UUID:
    owner = uuid.uuid4()
    await store.register_worker(owner, "host", 1, [TASK], lease_time=30)
    return owner


async def test_a_zombie_attempt_can_change_nothing(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    job_id = await enqueue(make_scheduler, max_retries=3)
    zombie, peer = await register(store), await register(store)
    [first] = (await store.claim_jobs(zombie, [TASK], 10)).claimed
    assert first.lease == Lease(job_id, zombie, 1)

    await expire_lease(pool, store.schema, zombie)
    assert await store.reap_orphans(100, 1) == 1
    [second] = (await store.claim_jobs(peer, [TASK], 10)).claimed
    assert second.lease == Lease(job_id, peer, 2)

    # Every write the zombie's attempt could make matches 0 rows.
    assert await complete(store, first.lease) is False
    for outcome in AttemptOutcome:  # every outcome goes through the one fenced write
        assert await end(store, first.lease, outcome) is None, outcome
    beat = await store.heartbeat(zombie, [TASK], 30)
    assert beat.alive is False and beat.owned == frozenset()

    assert await complete(store, second.lease) is True
    job = await store.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (JobStatus.SUCCEEDED, 2, None)


async def test_orphans_spend_the_lost_lease_budget_never_max_retries(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    generous = await enqueue(make_scheduler, max_retries=5)
    strict = await enqueue(make_scheduler, max_retries=0)
    for round_ in (1, 2):
        owner = await register(store)
        assert len((await store.claim_jobs(owner, [TASK], 10)).claimed) == 2
        assert await store.reap_orphans(100, 1) == 0  # the lease still holds
        await expire_lease(pool, store.schema, owner)
        assert await store.reap_orphans(100, 1) == 2
        assert await store.delete_dead_workers() == 1
        for job_id in (generous, strict):
            job = await store.get_job(job_id)
            assert job is not None
            assert (job.attempts, job.lost_leases, job.failures) == (round_, round_, 0)
            # One lost lease is allowed (orphan_retries=1), whatever max_retries says.
            expected = JobStatus.PENDING if round_ == 1 else JobStatus.FAILED
            assert job.status is expected
            if expected is JobStatus.FAILED:
                assert job.last_error is not None and "lost its lease" in job.last_error


async def test_lost_leases_get_extra_attempts_but_a_poison_job_ends_failed(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    job_id = await enqueue(make_scheduler, max_retries=0)
    statuses = []
    for _ in range(3):  # a job that kills its worker every time
        owner = await register(store)
        assert len((await store.claim_jobs(owner, [TASK], 10)).claimed) == 1
        await expire_lease(pool, store.schema, owner)
        assert await store.reap_orphans(100, 2) == 1
        job = await store.get_job(job_id)
        assert job is not None
        statuses.append((job.attempts, job.status))
    assert statuses == [(1, JobStatus.PENDING), (2, JobStatus.PENDING), (3, JobStatus.FAILED)]


async def test_an_orphan_with_a_cancel_request_ends_cancelled(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    job_id = await enqueue(make_scheduler, max_retries=5)
    owner = await register(store)
    await store.claim_jobs(owner, [TASK], 10)
    assert await store.cancel_job(job_id) is JobStatus.RUNNING
    await expire_lease(pool, store.schema, owner)
    await store.reap_orphans(100, 0)
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED


async def test_the_orphan_sweep_cannot_undo_a_completion_it_races(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    job_id = await enqueue(make_scheduler, max_retries=3)
    owner = await register(store)
    [claimed] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    await expire_lease(pool, store.schema, owner)
    async with pool.acquire() as conn:
        completing = conn.transaction()
        await completing.start()
        # The completion holds the row lock; the sweep runs meanwhile and must skip it.
        done = await conn.fetch(
            store.q.claim_jobs,
            NO_OWNER,
            [],
            PRIORITIES_DESCENDING,
            0,
            0.0,
            [job_id],
            [owner],
            [1],
            [None],
            [],
        )
        assert [(r["job_id"], r["kind"]) for r in done] == [(job_id, "completed")]
        assert await store.reap_orphans(100, 0) == 0
        await completing.commit()
    assert await store.reap_orphans(100, 0) == 0  # re-checked: no longer running
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert claimed.lease.attempt == 1


async def test_a_completion_that_lands_after_the_sweep_changes_nothing(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    job_id = await enqueue(make_scheduler, max_retries=3)
    owner = await register(store)
    [claimed] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    await expire_lease(pool, store.schema, owner)
    assert await store.reap_orphans(100, 1) == 1
    assert await complete(store, claimed.lease) is False
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING


async def test_a_replica_told_its_lease_expired_fences_and_cancels_its_jobs(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    async with make_scheduler(heartbeat_interval=0.2) as scheduler:
        job_id = await scheduler.schedule(jobs.hang_on_first_attempt, args=(key,), max_retries=2)
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        first_identity = scheduler.worker_id
        await expire_lease(pool, migrated, first_identity)
        # The next heartbeat learns the lease is gone: the attempt is cancelled, the
        # replica continues under a new identity, and the sweep hands the job back.
        await wait_until(lambda: holds(jobs.calls(key, event="finished")), timeout=20)
        assert scheduler.worker_id != first_identity
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempts == 2
    assert [c["event"] for c in jobs.calls(key)] == [
        "started",
        "interrupted",
        "started",
        "finished",
    ]


async def test_a_replica_that_cannot_heartbeat_fences_itself_before_its_lease_ends(
    pool: asyncpg.Pool,
    migrated: str,
    make_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = unique_schema("k")
    async with make_scheduler(lease_time=2.0, heartbeat_interval=0.3) as scheduler:
        job_id = await scheduler.schedule(jobs.wait_forever, args=(key,))
        await wait_until(lambda: holds(jobs.calls(key, event="started")))
        identity = scheduler.worker_id

        async def broken_heartbeat(*_args: object) -> None:
            raise ConnectionError("network partition")

        monkeypatch.setattr(scheduler._store, "heartbeat", broken_heartbeat)
        await wait_until(lambda: holds(jobs.calls(key, event="interrupted")))
        # It stopped the job while the database still considered the lease valid.
        still_valid = await pool.fetchval(
            f"SELECT lease_expires_at > now() FROM {quote_identifier(migrated)}.workers"
            " WHERE worker_id = $1",
            identity,
        )
        assert still_valid is True
        assert scheduler.worker_id != identity
        job = await scheduler.get_job(job_id)
        assert job is not None and job.status is JobStatus.RUNNING  # not its to write
        monkeypatch.undo()
        # Once the old lease expires the sweep hands the job back, and it runs again
        # (attempt 2) under the replica's new identity.
        await wait_until(lambda: holds(len(jobs.calls(key, event="started")) == 2), timeout=20)
        job = await scheduler.get_job(job_id)
        assert job is not None and job.attempts == 2 and job.lease_owner == scheduler.worker_id


async def test_finished_jobs_are_pruned_after_retention_and_nothing_else(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    done = await enqueue(make_scheduler)
    cancelled = await enqueue(make_scheduler, delay=60)
    waiting = await enqueue(make_scheduler, delay=60)
    running = await enqueue(make_scheduler, job_id="running-one")
    owner = await register(store)
    claimed = {c.lease.job_id: c for c in (await store.claim_jobs(owner, [TASK], 10)).claimed}
    assert set(claimed) == {done, running}
    assert await complete(store, claimed[done].lease)
    assert await store.cancel_job(cancelled) is JobStatus.PENDING
    assert await store.prune_finished_jobs(older_than_seconds=3600, limit=10) == 0
    from scheduler.services.pruner import Pruner

    assert await Pruner(store, retention=0, interval=1, batch_size=1).run_once() == 2
    remaining = {r["job_id"] for r in await pool.fetch(f'SELECT job_id FROM "{store.schema}".jobs')}
    assert remaining == {waiting, running}


async def test_heartbeats_write_one_worker_row_and_no_job_rows(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = unique_schema("k")
    q = quote_identifier(migrated)
    async with make_scheduler(heartbeat_interval=60, lease_time=120) as scheduler:
        for _ in range(5):
            await scheduler.schedule(jobs.wait_forever, args=(key,))
        await wait_until(lambda: holds(len(jobs.calls(key, event="started")) == 5))
        job_versions = await pool.fetch(f"SELECT job_id, xmin::text FROM {q}.jobs ORDER BY 1")
        lease = await pool.fetchval(f"SELECT lease_expires_at FROM {q}.workers")
        for _ in range(3):
            await scheduler._started().heartbeat.run_once()
        assert await pool.fetch(f"SELECT job_id, xmin::text FROM {q}.jobs ORDER BY 1") == (
            job_versions
        )
        assert await pool.fetchval(f"SELECT lease_expires_at FROM {q}.workers") > lease


async def test_a_worker_whose_lease_expired_claims_nothing(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    """Issue 9 item 1: a replica resuming from a freeze past its lease must not claim under
    its expired identity, even before it notices; the database refuses the claim."""
    job_id = await enqueue(make_scheduler)
    frozen = await register(store)
    await expire_lease(pool, store.schema, frozen)
    assert (await store.claim_jobs(frozen, [TASK], 10)).claimed == []
    job = await store.get_job(job_id)
    assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert (await store.claim_jobs(uuid.uuid4(), [TASK], 10)).claimed == []  # never registered


async def test_attempt_numbers_never_repeat_and_budgets_are_separate(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    """Issue 9 item 4: a release, a lost lease and a failure each use up an attempt number;
    only failures spend max_retries, only lost leases spend orphan_retries."""
    job_id = await enqueue(make_scheduler, max_retries=1)
    owner = await register(store)
    [first] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    assert await end(store, first.lease, AttemptOutcome.RELEASED)  # graceful: spends nothing
    [second] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    await expire_lease(pool, store.schema, owner)
    assert await store.reap_orphans(100, 2) == 1  # lost lease
    peer = await register(store)
    [third] = (await store.claim_jobs(peer, [TASK], 10)).claimed
    assert (
        await end(store, third.lease, AttemptOutcome.FAILED, "boom") is JobStatus.PENDING
    )  # 1 <= 1 retry
    [fourth] = (await store.claim_jobs(peer, [TASK], 10)).claimed
    assert await end(store, fourth.lease, AttemptOutcome.FAILED, "boom again") is JobStatus.FAILED
    seen = [c.lease.attempt for c in (first, second, third, fourth)]
    assert seen == [1, 2, 3, 4]
    job = await store.get_job(job_id)
    assert job is not None
    assert (job.attempts, job.failures, job.lost_leases) == (4, 2, 1)


async def test_replace_resets_the_budgets_but_not_the_attempt_counter(
    store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    job_id = await scheduler.schedule(jobs.record, args=("k",), job_id="replaced", max_retries=0)
    owner = await register(store)
    [first] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    assert await end(store, first.lease, AttemptOutcome.FAILED, "boom") is JobStatus.FAILED
    await scheduler.schedule(
        jobs.record,
        args=("k",),
        job_id=job_id,
        conflict_resolution=ConflictResolution.REPLACE,
    )
    [second] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    assert second.lease.attempt == 2  # a revived job's attempt is still a new token
    assert await end(store, first.lease, AttemptOutcome.FAILED, "zombie") is None
    job = await store.get_job(job_id)
    assert job is not None and (job.status, job.failures) == (JobStatus.RUNNING, 0)


async def test_held_attempts_nobody_runs_are_handed_back_fenced(
    pool: asyncpg.Pool, store: PostgresJobStore, make_scheduler: SchedulerFactory
) -> None:
    """Issue 9 item 2 at the store level: the heartbeat reports held attempts, and handing
    back is fenced per attempt and spends the lost-lease budget."""
    job_id = await enqueue(make_scheduler, max_retries=5)
    owner = await register(store)
    [claimed] = (await store.claim_jobs(owner, [TASK], 10)).claimed
    beat = await store.heartbeat(owner, [TASK], 30)
    assert beat.owned == frozenset({(job_id, 1)})
    assert await store.reclaim_attempts(owner, [(job_id, 2)], 2) == 0  # wrong attempt
    assert await store.reclaim_attempts(uuid.uuid4(), [(job_id, 1)], 2) == 0  # wrong owner
    assert await store.reclaim_attempts(owner, [(job_id, 1)], 2) == 1
    job = await store.get_job(job_id)
    assert job is not None
    assert (job.status, job.lost_leases, job.failures) == (JobStatus.PENDING, 1, 0)
    assert await complete(store, claimed.lease) is False  # the attempt is over


async def test_the_services_step_by_step_against_the_storage_port(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    """The dispatcher and the heartbeat driven one step at a time through the port: an
    attempt the database gives this worker but nothing here runs is handed back at the
    second beat, not the first (a claim's reply may still be on its way at the first)."""
    store: JobStore = PostgresJobStore(pool, migrated)
    job_id = await enqueue(make_scheduler, max_retries=0)
    started: list[RunningJob] = []
    running, identity = RunningJobs(capacity=4, start=started.append), WorkerIdentity()
    heartbeat = Heartbeat(
        store, running, identity, lambda: [TASK], lease_time=30, interval=10, orphan_retries=1
    )
    dispatcher = Dispatcher(
        store, Claims(store), running, identity, lambda: [TASK], batch_size=10, poll_interval=1
    )
    await heartbeat.register()
    assert await dispatcher.run_once() == 1
    [entry] = started
    assert entry.key == (job_id, 1)
    running.remove(entry)  # as if the claim's reply had been lost: nothing runs it here

    await heartbeat.run_once()  # first sighting: it could still be a claim in flight
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING
    await heartbeat.run_once()  # seen again, no claim in flight: handed back
    job = await store.get_job(job_id)
    assert job is not None
    assert (job.status, job.lost_leases, job.lease_owner) == (JobStatus.PENDING, 1, None)


class FlakyHeartbeats(PostgresJobStore):
    """Fails the next `failures` heartbeats, as a database restart or a dropped
    connection would."""

    failures = 0
    beats = 0

    async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        self.beats += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the connection was reset (a database restart)")
        return await super().heartbeat(*args, **kwargs)


async def test_a_failed_heartbeat_is_retried_before_the_fence_not_an_interval_later(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """On the default settings (lease 30 s, beats every 10 s, fence 20 s after a beat) the
    beat after a failed one was due at the fence time itself, so one failed beat (a
    one-second database restart) fenced the replica and cancelled its jobs. Here the same
    ratio, ten times faster."""
    store = FlakyHeartbeats(pool, migrated)
    running, identity = RunningJobs(capacity=4), WorkerIdentity()
    heartbeat = Heartbeat(
        store, running, identity, lambda: [TASK], lease_time=3, interval=1, orphan_retries=1
    )
    await heartbeat.register()
    registered_as = identity.current
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat.run)
        await wait_until(lambda: holds(store.beats >= 1))
        store.failures = 1
        failed_at = store.beats + 1
        # The failed beat, then beats until well past the fence time it would have hit.
        await wait_until(lambda: holds(store.beats >= failed_at + 3), timeout=15)
        tg.cancel_scope.cancel()
    assert identity.current == registered_as, "one failed beat fenced the replica"


async def test_a_claim_in_flight_keeps_its_rows_from_being_handed_back(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    store: JobStore = PostgresJobStore(pool, migrated)
    job_id = await enqueue(make_scheduler)
    running, identity = RunningJobs(capacity=4), WorkerIdentity()
    heartbeat = Heartbeat(
        store, running, identity, lambda: [TASK], lease_time=30, interval=10, orphan_retries=1
    )
    await heartbeat.register()
    claim = running.claim_sent()  # a claim whose reply has not been handled yet...
    result = await store.claim_jobs(identity.current, [TASK], 10)  # ...and has committed
    [claimed] = result.claimed
    await heartbeat.run_once()
    await heartbeat.run_once()
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING  # left alone
    running.claim_done(claim)  # the reply is handled: the attempt is ours and runs
    running.add(claimed)
    await heartbeat.run_once()
    await heartbeat.run_once()
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING
