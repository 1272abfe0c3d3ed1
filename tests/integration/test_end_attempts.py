"""end_attempts(): the one fenced write that ends attempts, whatever their outcome, called by
both claims, the runner, the SQL worker protocol and the sweeps."""

from __future__ import annotations

import asyncpg
import pytest

from scheduler.postgres.sql import quote_identifier
from tests.integration.test_sql_worker_protocol import claim, job, register, schedule

END = (
    "SELECT * FROM {q}.end_attempts($1::text[], $2::uuid[], $3::integer[], $4::text[],"
    " errors => $5::text[], delays => $6::float8[], lost_budget => $7)"
)


async def end(
    pool: asyncpg.Pool,
    schema: str,
    ends: list[tuple[str, str, int, str]],
    errors: list[str | None] | None = None,
    delays: list[float] | None = None,
    lost_budget: int = 0,
) -> dict[str, str]:
    rows = await pool.fetch(
        END.format(q=quote_identifier(schema)),
        [e[0] for e in ends],
        [e[1] for e in ends],
        [e[2] for e in ends],
        [e[3] for e in ends],
        errors or [],
        delays or [],
        lost_budget,
    )
    return {row["job_id"]: row["status"] for row in rows}


async def history(pool: asyncpg.Pool, schema: str, job_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        f"SELECT outcome, error FROM {quote_identifier(schema)}.job_attempts"
        " WHERE job_id = $1 ORDER BY attempt",
        job_id,
    )
    return [(row["outcome"], row["error"]) for row in rows]


async def test_one_batch_ends_attempts_with_different_outcomes(
    pool: asyncpg.Pool, migrated: str
) -> None:
    outcomes = {
        "s": "succeeded",
        "f": "failed",
        "t": "timed out",
        "c": "cancelled",
        "r": "released",
        "z": "snoozed",
        "l": "lease lost",
        "h": "handed back",
    }
    for job_id in outcomes:
        await schedule(pool, migrated, job_id, max_retries=1)
    worker = await register(pool, migrated)
    assert sorted(await claim(pool, migrated, worker, max_jobs=10)) == sorted(outcomes)

    ended = await end(
        pool,
        migrated,
        [(job_id, worker, 1, outcome) for job_id, outcome in outcomes.items()],
        errors=[None, "boom", "too slow", "stop", "shutdown", None, None, None],
        delays=[0, 60, 60, 0, 0, 120, 0, 0],
        lost_budget=1,
    )

    assert ended == {
        "s": "succeeded",
        "f": "pending",  # one retry left
        "t": "pending",
        "c": "cancelled",
        "r": "pending",
        "z": "pending",
        "l": "pending",  # one lost lease allowed
        "h": "pending",
    }
    rows = {job_id: await job(pool, migrated, job_id) for job_id in outcomes}
    assert (rows["f"]["failures"], rows["f"]["last_error"]) == (1, "boom")
    assert rows["l"]["lost_leases"] == rows["h"]["lost_leases"] == 1
    assert rows["r"]["failures"] == rows["z"]["failures"] == 0
    for job_id in outcomes:
        assert rows[job_id]["lease_owner"] is None
        [(outcome, _)] = await history(pool, migrated, job_id)
        assert outcome == outcomes[job_id]
    assert await history(pool, migrated, "z") == [("snoozed", "snoozed for 120 seconds")]
    delay = await pool.fetchval(
        f"SELECT extract(epoch FROM execution_time - now()) FROM {quote_identifier(migrated)}.jobs"
        " WHERE job_id = 'z'"
    )
    assert 100 < delay <= 120


async def test_a_stale_attempt_changes_nothing_and_is_left_out(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await schedule(pool, migrated, "a")
    await schedule(pool, migrated, "b")
    worker = await register(pool, migrated)
    stranger = await register(pool, migrated)
    assert sorted(await claim(pool, migrated, worker, max_jobs=2)) == ["a", "b"]
    ended = await end(
        pool,
        migrated,
        [
            ("a", worker, 2, "succeeded"),  # a later attempt than the one held
            ("b", stranger, 1, "failed"),  # another worker
            ("nope", worker, 1, "cancelled"),  # no such job
        ],
    )
    assert ended == {}
    for job_id in ("a", "b"):
        row = await job(pool, migrated, job_id)
        assert (row["status"], str(row["lease_owner"])) == ("running", worker)
        assert await history(pool, migrated, job_id) == []


@pytest.mark.parametrize(
    ("outcome", "status", "recorded"),
    [
        ("released", "cancelled", "cancelled"),
        ("snoozed", "cancelled", "cancelled"),
        ("lease lost", "cancelled", "lease lost"),
        ("failed", "failed", "failed"),  # retries were left: the cancel still ends it
    ],
)
async def test_a_requested_cancel_wins_over_going_back_to_pending(
    pool: asyncpg.Pool, migrated: str, outcome: str, status: str, recorded: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a", max_retries=3)
    worker = await register(pool, migrated)
    assert await claim(pool, migrated, worker) == ["a"]
    assert await pool.fetchval(f"SELECT {q}.cancel_job('a')") == "cancel_requested"
    assert await end(pool, migrated, [("a", worker, 1, outcome)], lost_budget=5) == {"a": status}
    [(written, _)] = await history(pool, migrated, "a")
    assert written == recorded


async def test_an_unknown_outcome_is_refused_and_writes_nothing(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await schedule(pool, migrated, "a")
    await schedule(pool, migrated, "b")
    worker = await register(pool, migrated)
    assert sorted(await claim(pool, migrated, worker, max_jobs=2)) == ["a", "b"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="must be one of"):
        await end(pool, migrated, [("a", worker, 1, "succeeded"), ("b", worker, 1, "exploded")])
    for job_id in ("a", "b"):
        assert (await job(pool, migrated, job_id))["status"] == "running"
        assert await history(pool, migrated, job_id) == []


async def test_lost_leases_past_their_budget_fail_the_job(
    pool: asyncpg.Pool, migrated: str
) -> None:
    await schedule(pool, migrated, "a", max_retries=5)
    worker = await register(pool, migrated)
    assert await claim(pool, migrated, worker) == ["a"]
    assert await end(pool, migrated, [("a", worker, 1, "handed back")], lost_budget=0) == {
        "a": "failed"
    }
    row = await job(pool, migrated, "a")
    assert row["failures"] == 0 and row["lost_leases"] == 1
    assert "never run or recorded" in row["last_error"]


@pytest.mark.parametrize(
    "arrays",
    [
        "ARRAY['a', 'b'], ARRAY[$1::uuid, $1::uuid], ARRAY[1], ARRAY['succeeded', 'succeeded']",
        "ARRAY['a'], ARRAY[$1::uuid], ARRAY[1], NULL",
        "ARRAY['a'], ARRAY[$1::uuid], ARRAY[1], ARRAY['failed'], errors => ARRAY['x', 'y']",
        "ARRAY['a', 'a'], ARRAY[$1::uuid, $1::uuid], ARRAY[1, 1], ARRAY['succeeded', 'failed']",
    ],
    ids=["short attempts", "no outcomes", "long errors", "an attempt twice"],
)
async def test_arrays_that_do_not_line_up_are_refused_and_write_nothing(
    pool: asyncpg.Pool, migrated: str, arrays: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a")
    await schedule(pool, migrated, "b")
    worker = await register(pool, migrated)
    assert sorted(await claim(pool, migrated, worker, max_jobs=2)) == ["a", "b"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="end_attempts"):
        await pool.fetch(f"SELECT * FROM {q}.end_attempts({arrays})", worker)
    for job_id in ("a", "b"):
        assert (await job(pool, migrated, job_id))["status"] == "running"
        assert await history(pool, migrated, job_id) == []


async def test_fail_job_keeps_the_retry_time_it_was_given_exactly(
    pool: asyncpg.Pool, migrated: str
) -> None:
    q = quote_identifier(migrated)
    await schedule(pool, migrated, "a", max_retries=1)
    worker = await register(pool, migrated)
    assert await claim(pool, migrated, worker) == ["a"]
    at = "9999-12-29 23:59:59.123457+00"
    assert (
        await pool.fetchval(
            f"SELECT {q}.fail_job($1, 'a', 1, 'boom', $2::text::timestamptz)", worker, at
        )
        == "pending"
    )
    assert await pool.fetchval(
        f"SELECT execution_time = $1::text::timestamptz FROM {q}.jobs WHERE job_id = 'a'", at
    )
