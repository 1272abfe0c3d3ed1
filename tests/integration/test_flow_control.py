"""Issue 11: queues, fleet-wide concurrency limits, lock keys, unique keys and rate limits,
enforced by the database in the claim (or the insert), with many claimers racing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from scheduler import (
    ConfigurationError,
    ConflictResolution,
    IntervalTrigger,
    InvalidJobError,
    JobIsRunningError,
    JobRequest,
    JobStatus,
    UniqueKeyConflictError,
)
from scheduler.postgres.sql import quote_identifier
from scheduler.postgres.store import PostgresJobStore
from scheduler.services.claiming import Claims
from tests.conftest import SchedulerFactory
from tests.support import jobs
from tests.support.claims import claim
from tests.support.db import has_status, holds, wait_until

TASK = "tests.support.jobs:record"
OTHER = "tests.support.jobs:record_sync"


async def workers(store: PostgresJobStore, count: int, queues: Sequence[str]) -> list[uuid.UUID]:
    owners = [uuid.uuid4() for _ in range(count)]
    for owner in owners:
        await store.register_worker(owner, "host", 1, [TASK, OTHER], 30, queues)
    return owners


async def enqueue(
    pool: asyncpg.Pool,
    schema: str,
    count: int,
    *,
    queue: str = "default",
    task: str = TASK,
    lock_key: str | None = None,
) -> None:
    await pool.execute(
        f"INSERT INTO {quote_identifier(schema)}.jobs (task_name, queue, lock_key)"
        " SELECT $1, $2, $3 FROM generate_series(1, $4)",
        task,
        queue,
        lock_key,
        count,
    )


async def claim_all_at_once(
    pool: asyncpg.Pool, schema: str, owners: Sequence[uuid.UUID], queues: Sequence[str]
) -> int:
    """Every owner claims at the same moment, each through its own store (a replica);
    returns how many jobs were claimed in total."""

    async def one(owner: uuid.UUID) -> int:
        store = PostgresJobStore(pool, schema)
        return len(await claim(store, owner, [TASK, OTHER], 10, 0.0, queues))

    return sum(await asyncio.gather(*(one(owner) for owner in owners)))


async def running(pool: asyncpg.Pool, schema: str, where: str = "true") -> int:
    return int(
        await pool.fetchval(
            f"SELECT count(*) FROM {quote_identifier(schema)}.jobs"
            f" WHERE status = 'running' AND {where}"
        )
    )


# -- queues -----------------------------------------------------------------------------


async def test_a_replica_claims_only_from_its_queues(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = f"q-{uuid.uuid4()}"
    emails = make_scheduler(queues=["emails"], tasks=[jobs.record])
    await emails.start()
    assert emails.queues == ["emails"]
    in_default = await emails.schedule(jobs.record, args=(key, "default"))
    in_emails = await emails.schedule(jobs.record, args=(key, "emails"), queue="emails")
    await wait_until(lambda: has_status(emails, in_emails, JobStatus.SUCCEEDED))
    job = await emails.get_job(in_default)
    assert job is not None and job.status is JobStatus.PENDING and job.queue == "default"
    worker_queues = await pool.fetchval(
        f"SELECT queues FROM {quote_identifier(migrated)}.workers WHERE worker_id = $1",
        emails.worker_id,
    )
    assert worker_queues == ["emails"]


async def test_a_task_declares_its_queue_and_schedule_overrides_it(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    scheduler.register(jobs.record_sync, queue="reports")
    assert scheduler.queues == ["default", "reports"]  # the default: its tasks' queues
    declared = await scheduler.schedule(jobs.record_sync, args=("k",))
    overridden = await scheduler.schedule(jobs.record_sync, args=("k",), queue="urgent")
    many = await scheduler.schedule_many([JobRequest(jobs.record_sync, args=("k",), queue="bulk")])
    queues = [
        (await scheduler.get_job(job_id)).queue  # type: ignore[union-attr]
        for job_id in (declared, overridden, *many)
    ]
    assert queues == ["reports", "urgent", "bulk"]


async def test_a_bad_queue_name_writes_nothing(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    # Every refused name and its message: tests/unit/test_flow_input.py.
    scheduler = make_scheduler()
    with pytest.raises(InvalidJobError, match="queue must be"):
        await scheduler.schedule(jobs.record, args=("k",), queue="a b")
    with pytest.raises(ConfigurationError, match="queue must be"):
        await scheduler.pause_queue("a b")
    assert await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(migrated)}.jobs") == 0
    assert await pool.fetchval(f"SELECT count(*) FROM {quote_identifier(migrated)}.queues") == 0


async def test_a_paused_queue_is_claimed_by_no_one_and_its_running_jobs_finish(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    key = f"p-{uuid.uuid4()}"
    scheduler = make_scheduler(tasks=[jobs.sleep_then_record, jobs.record])
    await scheduler.start()
    running_one = await scheduler.schedule(jobs.sleep_then_record, args=(key, 0.5))
    await wait_until(lambda: holds(jobs.calls(key, event="started")))
    await scheduler.pause_queue("default")
    waiting = await scheduler.schedule(jobs.record, args=(key,))
    # The running job finishes while paused; the new one is not claimed, by the Python
    # claim or by a foreign worker's SQL claim.
    await wait_until(lambda: has_status(scheduler, running_one, JobStatus.SUCCEEDED))
    store = PostgresJobStore(pool, migrated)
    [foreign] = await workers(store, 1, ["default"])
    q = quote_identifier(migrated)
    assert await pool.fetch(f"SELECT * FROM {q}.claim_jobs($1, max_jobs => 10)", foreign) == []
    [stats] = await scheduler.queue_stats()
    assert (stats.queue, stats.paused, stats.due_now) == ("default", True, 1)
    assert await has_status(scheduler, waiting, JobStatus.PENDING)
    # Pausing is deliberate: the reaper never fails a paused queue's jobs as unrunnable.
    assert await store.fail_unrunnable_jobs(0.0, 100) == 0
    assert await pool.fetchval(f"SELECT {q}.resume_queue('default')") is True
    await wait_until(lambda: has_status(scheduler, waiting, JobStatus.SUCCEEDED))
    assert await scheduler.resume_queue("default") is False  # no longer paused


# -- concurrency limits -----------------------------------------------------------------


async def test_a_queue_limit_holds_with_many_claimers_racing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    store = PostgresJobStore(pool, migrated)
    await pool.execute(
        f"SELECT {quote_identifier(migrated)}.set_queue_limits('limited', concurrency_limit => 3)"
    )
    await enqueue(pool, migrated, 50, queue="limited")
    await enqueue(pool, migrated, 20, queue="free")
    owners = await workers(store, 12, ["limited", "free"])
    claimed = await claim_all_at_once(pool, migrated, owners, ["limited", "free"])
    assert await running(pool, migrated, "queue = 'limited'") == 3  # reached, not exceeded
    assert await running(pool, migrated, "queue = 'free'") == 20  # others run freely
    assert claimed == 23
    # Again, while those still run: nothing more from the limited queue.
    await claim_all_at_once(pool, migrated, owners, ["limited", "free"])
    assert await running(pool, migrated, "queue = 'limited'") == 3


async def test_a_task_limit_holds_across_queues_and_an_orphan_counts_until_reaped(
    pool: asyncpg.Pool, migrated: str
) -> None:
    store = PostgresJobStore(pool, migrated)
    q = quote_identifier(migrated)
    await pool.execute(f"SELECT {q}.set_task_limits($1, concurrency_limit => 2)", TASK)
    await enqueue(pool, migrated, 10, queue="a")
    await enqueue(pool, migrated, 10, queue="b")
    await enqueue(pool, migrated, 5, queue="a", task=OTHER)
    owners = await workers(store, 8, ["a", "b"])
    await claim_all_at_once(pool, migrated, owners, ["a", "b"])
    assert await running(pool, migrated, f"task_name = '{TASK}'") == 2
    assert await running(pool, migrated, f"task_name = '{OTHER}'") == 5
    # The holder of one attempt dies: its attempt still counts until the reaper returns it.
    holder = await pool.fetchval(
        f"SELECT lease_owner FROM {q}.jobs WHERE status = 'running' AND task_name = $1 LIMIT 1",
        TASK,
    )
    await pool.execute(
        f"UPDATE {q}.workers SET lease_expires_at = now() - interval '1 second'"
        " WHERE worker_id = $1",
        holder,
    )
    alive = [owner for owner in owners if owner != holder]
    await claim_all_at_once(pool, migrated, alive, ["a", "b"])
    assert await running(pool, migrated, f"task_name = '{TASK}'") == 2
    assert await store.reap_orphans(100, 5) >= 1
    await claim_all_at_once(pool, migrated, alive, ["a", "b"])
    assert await running(pool, migrated, f"task_name = '{TASK}'") == 2
    [limits] = await PostgresJobStore(pool, migrated).task_limits()
    assert (limits.task_name, limits.running, limits.limits.concurrency_limit) == (TASK, 2, 2)


async def test_a_limit_lowered_while_jobs_run_stops_new_claims_until_below_it(
    pool: asyncpg.Pool, migrated: str
) -> None:
    store = PostgresJobStore(pool, migrated)
    q = quote_identifier(migrated)
    await enqueue(pool, migrated, 10)
    [owner] = await workers(store, 1, ["default"])
    claims = Claims(store)  # one replica's claims, one after the other
    assert len(await claims.claim(owner, [TASK], 4)) == 4  # no limit yet
    await pool.execute(f"SELECT {q}.set_queue_limits('default', concurrency_limit => 2)")
    assert await claims.claim(owner, [TASK], 4) == []  # 4 run, the limit is 2
    finished = await pool.fetch(
        f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL, finished_at = now()"
        f" WHERE job_id IN (SELECT job_id FROM {q}.jobs WHERE status = 'running' LIMIT 3)"
        " RETURNING job_id"
    )
    assert len(finished) == 3
    assert len(await claims.claim(owner, [TASK], 4)) == 1  # back to the limit of 2


# -- lock keys --------------------------------------------------------------------------


async def test_jobs_sharing_a_lock_key_never_run_together_whatever_their_task(
    pool: asyncpg.Pool, migrated: str
) -> None:
    store = PostgresJobStore(pool, migrated)
    q = quote_identifier(migrated)
    await enqueue(pool, migrated, 10, lock_key="customer-42")
    await enqueue(pool, migrated, 10, task=OTHER, lock_key="customer-42")
    await enqueue(pool, migrated, 3, lock_key="customer-7")
    await enqueue(pool, migrated, 5)
    owners = await workers(store, 10, ["default"])
    assert await claim_all_at_once(pool, migrated, owners, ["default"]) == 2 + 5
    assert await running(pool, migrated, "lock_key = 'customer-42'") == 1
    assert await running(pool, migrated, "lock_key = 'customer-7'") == 1
    # A retried job keeps its key: back to pending, it waits its turn like the others.
    await pool.execute(
        f"UPDATE {q}.jobs SET status = 'pending', lease_owner = NULL"
        " WHERE lock_key = 'customer-42' AND status = 'running'"
    )
    await claim_all_at_once(pool, migrated, owners, ["default"])
    assert await running(pool, migrated, "lock_key = 'customer-42'") == 1
    # The database itself refuses a second running holder, whatever writes the row.
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            f"UPDATE {q}.jobs SET status = 'running', lease_owner = $1"
            " WHERE job_id = (SELECT job_id FROM {q}.jobs"
            " WHERE lock_key = 'customer-42' AND status = 'pending' LIMIT 1)".replace("{q}", q),
            owners[0],
        )


async def _behind_a_held_key(
    pool: asyncpg.Pool, schema: str, size: int
) -> tuple[PostgresJobStore, uuid.UUID]:
    """A key 'hot' held by a running job of one worker, with `size` pending successors due
    before anything else in the table; the store and the other worker, which claims."""
    store = PostgresJobStore(pool, schema)
    holder, owner = await workers(store, 2, ["default"])
    q = quote_identifier(schema)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time, status, lease_owner,"
        "                       attempts)"
        " VALUES ($1, 'hot', now() - interval '3 days', 'running', $2, 1)",
        TASK,
        holder,
    )
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time)"
        " SELECT $1, 'hot', now() - interval '2 days' + n * interval '1 millisecond'"
        " FROM generate_series(1, $2) AS n",
        TASK,
        size,
    )
    return store, owner


async def test_work_due_after_a_held_keys_long_backlog_is_claimed(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    # More successors than the claim reads in due order (max_jobs + 100), so only the walk
    # over the keys finds the free keys' work.
    store, owner = await _behind_a_held_key(pool, migrated, 500)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time, priority) VALUES"
        "  ($1, 'free-b', now() - interval '1 hour', 5),"
        "  ($1, 'free-b', now() - interval '2 hours', 5),"  # the key's first job
        "  ($1, 'free-a', now() - interval '1 hour', 1),"
        "  ($1, 'free-c', now() + interval '1 hour', 5),"  # not due yet
        "  ($1, NULL, now() - interval '1 hour', 5),"
        "  ($1, NULL, now() - interval '1 hour', 5)",
        TASK,
    )
    await pool.execute(f"ANALYZE {q}.jobs")
    claimed = await claim(store, owner, [TASK], 10, 0.0, ["default"])
    rows = await pool.fetch(
        f"SELECT lock_key, execution_time < now() - interval '90 minutes' AS first"
        f" FROM {q}.jobs WHERE status = 'running' AND lease_owner = $1",
        owner,
    )
    assert len(claimed) == 4
    assert sorted((r["lock_key"] or "", r["first"]) for r in rows) == [
        ("", False),
        ("", False),
        ("free-a", False),
        ("free-b", True),
    ]
    # The key stays held by its one running job: nothing of it was claimed beside it.
    assert await running(pool, migrated, "lock_key = 'hot'") == 1


async def test_walks_over_the_keys_take_every_free_key_in_turn(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    store, owner = await _behind_a_held_key(pool, migrated, 300)  # fills every window of a claim
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time)"
        " SELECT $1, k, now() - interval '1 hour' + n * interval '1 second'"
        " FROM unnest(ARRAY['k1', 'k2', 'k3', 'k4']) AS k, generate_series(1, 2) AS n",
        TASK,
    )
    taken: list[list[str]] = []
    for _ in range(3):
        claimed = await claim(store, owner, [TASK], 2, 0.0, ["default"])
        ids = [job.lease.job_id for job in claimed]
        taken.append(
            sorted(
                await pool.fetchval(
                    f"SELECT array_agg(lock_key) FROM {q}.jobs WHERE job_id = ANY($1::text[])",
                    ids,
                )
            )
        )
        # Done at once: each key is free again for the next claim.
        await pool.execute(
            f"UPDATE {q}.jobs SET status = 'succeeded', lease_owner = NULL,"
            " finished_at = now() WHERE job_id = ANY($1::text[])",
            ids,
        )
    # The second walk goes on after the first, the third round from the start: the first
    # keys in key order do not take every claim.
    assert taken == [["k1", "k2"], ["k3", "k4"], ["k1", "k2"]]


async def test_a_keys_due_job_behind_its_many_later_ones_of_higher_priority_is_claimed(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """Found in review: the walk read a key's first 100 jobs by priority whatever their due
    time, so 100 high-priority jobs due tomorrow hid the key's job due an hour ago."""
    q = quote_identifier(migrated)
    store, owner = await _behind_a_held_key(pool, migrated, 500)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time, priority)"
        " SELECT $1, 'kx', now() + interval '1 day', 20 FROM generate_series(1, 100)",
        TASK,
    )
    due = await pool.fetchval(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time, priority)"
        " VALUES ($1, 'kx', now() - interval '1 hour', 5) RETURNING job_id",  # as 'hot's
        TASK,
    )
    claimed = await claim(store, owner, [TASK], 10, 0.0, ["default"])
    assert [job.lease.job_id for job in claimed] == [due]


async def test_a_walk_over_many_keys_with_nothing_due_stays_cheap(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """While held keys fill the claim's window, every claim walks the keys; 2,000 keys with
    nothing due must cost it a bounded read (walk_limit keys), not all of them."""
    q = quote_identifier(migrated)
    _, owner = await _behind_a_held_key(pool, migrated, 500)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time)"
        " SELECT $1, 'later-' || n, now() + interval '1 day' FROM generate_series(1, 2000) n",
        TASK,
    )
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")
    buffers = await _claim_buffers(pool, migrated, owner)
    # 1,247 measured: a few probes per key for 100 keys (22,319 when a walk went to 1,000
    # keys and looked each next key up six times).
    assert buffers < 4_000, buffers


async def test_keyed_work_of_a_task_the_replica_does_not_run_leaves_it_on_the_plain_claim(
    pool: asyncpg.Pool, migrated: str
) -> None:
    """Found in review: any due keyed job in a replica's queue sent it through the
    serialised claim, one of a task it does not run (or nobody runs) included."""
    store = PostgresJobStore(pool, migrated)
    [owner] = await workers(store, 1, ["default"])
    await enqueue(pool, migrated, 1, task=OTHER, lock_key="theirs")
    await enqueue(pool, migrated, 2)
    plain = await store.claim_jobs(owner, [TASK], 10, 0.0, ["default"])
    assert (len(plain.claimed), plain.flow) == (2, False)
    await enqueue(pool, migrated, 1, lock_key="ours")
    plain = await store.claim_jobs(owner, [TASK], 10, 0.0, ["default"])
    assert (plain.claimed, plain.flow) == ([], True)


async def _claim_buffers(pool: asyncpg.Pool, schema: str, owner: uuid.UUID) -> int:
    """Shared buffers one call of claim_flow_jobs() for 10 jobs touches (under EXPLAIN
    ANALYZE, rolled back), the second of two on one connection: the first plans the
    function's statement there (a generic plan, kept), and planning reads the catalogs."""
    import json

    q = quote_identifier(schema)
    buffers = 0
    async with pool.acquire() as conn:
        for _ in range(2):
            transaction = conn.transaction()
            await transaction.start()
            try:
                plan = json.loads(
                    await conn.fetchval(
                        "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON)"
                        f" SELECT * FROM {q}.claim_flow_jobs($1, $2, $3, 10)",
                        owner,
                        [TASK],
                        ["default"],
                    )
                )[0]["Plan"]
            finally:
                await transaction.rollback()
            buffers = int(plan["Shared Hit Blocks"]) + int(plan.get("Shared Read Blocks", 0))
    return buffers


async def test_a_claim_reads_no_more_behind_a_held_key_of_20000_jobs_than_of_1000(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    _, owner = await _behind_a_held_key(pool, migrated, 1_000)
    await enqueue(pool, migrated, 20)  # the work the claim finds, due after the backlog
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")
    small = await _claim_buffers(pool, migrated, owner)
    await pool.execute(
        f"INSERT INTO {q}.jobs (task_name, lock_key, execution_time)"
        " SELECT $1, 'hot', now() - interval '2 days' + n * interval '1 microsecond'"
        " FROM generate_series(1, 19000) AS n",
        TASK,
    )
    await pool.execute(f"VACUUM ANALYZE {q}.jobs")
    large = await _claim_buffers(pool, migrated, owner)
    # Reading the held key's successors one by one would touch a page or more per job.
    assert large < small + 200, (small, large)


# -- unique keys ------------------------------------------------------------------------


async def _fifty_inserts(
    make_scheduler: SchedulerFactory, policy: ConflictResolution
) -> list[str | BaseException]:
    scheduler = make_scheduler()

    async def one(n: int) -> str:
        return await scheduler.schedule(
            jobs.record, args=(str(n),), unique_key="report-7", conflict_resolution=policy
        )

    return await asyncio.gather(*(one(n) for n in range(50)), return_exceptions=True)


async def test_fifty_concurrent_inserts_of_one_unique_key_under_each_policy(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    q = quote_identifier(migrated)
    for policy in ConflictResolution:
        await pool.execute(f"DELETE FROM {q}.jobs")
        results = await _fifty_inserts(make_scheduler, policy)
        rows = await pool.fetch(f"SELECT job_id FROM {q}.jobs WHERE unique_key = 'report-7'")
        assert len(rows) == 1, policy  # never two unfinished jobs with one key
        holder = rows[0]["job_id"]
        ids = [r for r in results if isinstance(r, str)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if policy is ConflictResolution.RAISE:
            assert ids == [holder] and len(errors) == 49
            assert all(isinstance(e, UniqueKeyConflictError) for e in errors)
            assert {e.job_id for e in errors if isinstance(e, UniqueKeyConflictError)} == {holder}
        else:  # IGNORE returns the holder; REPLACE overwrites it in place
            assert errors == [] and set(ids) == {holder}


async def test_a_unique_key_is_free_again_once_its_job_finished_or_rolled_back(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    q = quote_identifier(migrated)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await scheduler.schedule(jobs.record, args=("k",), unique_key="u", connection=conn)
        await transaction.rollback()
    first = await scheduler.schedule(jobs.record, args=("k",), unique_key="u")
    await pool.execute(f"UPDATE {q}.jobs SET status = 'succeeded', finished_at = now()")
    second = await scheduler.schedule(jobs.record, args=("k",), unique_key="u")
    assert first != second
    with pytest.raises(UniqueKeyConflictError):
        await scheduler.schedule(jobs.record, args=("k",), unique_key="u")
    with pytest.raises(InvalidJobError, match="appears twice"):
        await scheduler.schedule_many(
            [JobRequest(jobs.record, args=("k",), unique_key="v") for _ in range(2)]
        )


async def test_replace_by_unique_key_refuses_a_running_holder(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    q = quote_identifier(migrated)
    holder = await scheduler.schedule(jobs.record, args=("old",), unique_key="u")
    replaced = await scheduler.schedule(
        jobs.record,
        args=("new",),
        unique_key="u",
        conflict_resolution=ConflictResolution.REPLACE,
    )
    job = await scheduler.get_job(holder)
    assert replaced == holder and job is not None and job.args == ("new",)
    await pool.execute(f"UPDATE {q}.jobs SET status = 'running', lease_owner = gen_random_uuid()")
    with pytest.raises(JobIsRunningError, match="running"):
        await scheduler.schedule(
            jobs.record,
            args=("newer",),
            unique_key="u",
            conflict_resolution=ConflictResolution.REPLACE,
        )


# -- rate limits ------------------------------------------------------------------------


async def test_a_rate_limit_starts_a_burst_then_holds_back_and_says_when_to_look_again(
    pool: asyncpg.Pool, migrated: str
) -> None:
    store = PostgresJobStore(pool, migrated)
    q = quote_identifier(migrated)
    await pool.execute(
        f"SELECT {q}.set_queue_limits('default', rate_limit => 1, rate_period => 3600,"
        " rate_burst => 3)"
    )
    await enqueue(pool, migrated, 20)
    owners = await workers(store, 6, ["default"])
    assert await claim_all_at_once(pool, migrated, owners, ["default"]) == 3  # the burst
    claims = Claims(store)
    assert await claims.claim(owners[0], [TASK], 10) == []
    retry = claims.held_back_retry
    assert retry is not None and retry > 0


async def test_bad_limits_write_nothing_and_the_sql_function_refuses_them_too(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    # Every refused limit and its message: tests/unit/test_flow_input.py.
    scheduler = make_scheduler()
    with pytest.raises(ConfigurationError, match="concurrency_limit"):
        await scheduler.set_queue_limits("default", concurrency_limit=0)
    with pytest.raises(ConfigurationError, match="rate_limit"):
        await scheduler.set_task_limits(TASK, rate_limit=-1)
    q = quote_identifier(migrated)
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.queues") == 0
    assert await pool.fetchval(f"SELECT count(*) FROM {q}.task_limits") == 0
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await pool.execute(f"SELECT {q}.set_queue_limits('default', concurrency_limit => 0)")


async def test_queue_stats_show_depth_running_pause_and_limits(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    await enqueue(pool, migrated, 4, queue="a")
    await scheduler.set_queue_limits("b", concurrency_limit=2, rate_limit=10, rate_burst=5)
    await scheduler.pause_queue("c")
    stats = {s.queue: s for s in await scheduler.queue_stats()}
    assert (stats["a"].due_now, stats["a"].paused, stats["a"].limits.concurrency_limit) == (
        4,
        False,
        None,
    )
    assert (stats["b"].limits.concurrency_limit, stats["b"].limits.rate_burst) == (2, 5)
    assert stats["c"].paused


async def test_a_recurring_schedule_fires_its_jobs_into_its_queue(
    pool: asyncpg.Pool, migrated: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(tasks=[jobs.record], queues=["ticks"])
    schedule_id = await scheduler.add_schedule(
        jobs.record, IntervalTrigger(seconds=0.2), args=("tick",), queue="ticks"
    )
    schedule = await scheduler.get_schedule(schedule_id)
    assert schedule is not None and schedule.queue == "ticks"
    await scheduler.start()
    q = quote_identifier(migrated)

    async def fired_into_ticks() -> bool:
        queues = await pool.fetch(f"SELECT DISTINCT queue FROM {q}.jobs WHERE status = 'succeeded'")
        return [r["queue"] for r in queues] == ["ticks"]

    await wait_until(fired_into_ticks)
