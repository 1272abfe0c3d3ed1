from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import anyio

from scheduler.services.completions import CompletionBatcher
from scheduler.store import Lease

OWNER = uuid.uuid4()


async def test_completions_arriving_during_a_write_share_the_next_one() -> None:
    writes: list[list[str]] = []

    async def write(leases: Sequence[Lease]) -> set[str]:
        writes.append([lease.job_id for lease in leases])
        await anyio.sleep(0.05)  # a commit in flight
        return {lease.job_id for lease in leases if lease.attempt == 1}  # attempt 2: fenced

    batcher = CompletionBatcher(write)
    results: dict[str, bool] = {}

    async def complete(n: int) -> None:
        lease = Lease(f"job-{n}", OWNER, 1 if n % 3 else 2)
        results[lease.job_id] = await batcher.complete(lease)

    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(complete, n)
    assert sorted(job for write in writes for job in write) == sorted(f"job-{n}" for n in range(30))
    assert len(writes) == 2  # the first arrival alone, then everyone who waited
    assert results == {f"job-{n}": n % 3 != 0 for n in range(30)}


async def test_a_failed_write_reaches_every_waiter_of_its_batch() -> None:
    calls = 0

    async def write(leases: Sequence[Lease]) -> set[str]:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.01)
        raise ConnectionError("server closed the connection")

    batcher = CompletionBatcher(write)
    failures: list[BaseException] = []

    async def complete(n: int) -> None:
        try:
            await batcher.complete(Lease(f"job-{n}", OWNER, 1))
        except ConnectionError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(complete, n)
    assert len(failures) == 5
    assert calls == 2


async def test_batches_are_capped() -> None:
    sizes: list[int] = []

    async def write(leases: Sequence[Lease]) -> set[str]:
        sizes.append(len(leases))
        await anyio.sleep(0.01)
        return {lease.job_id for lease in leases}

    batcher = CompletionBatcher(write, max_batch=4)
    async with anyio.create_task_group() as tg:
        for n in range(13):
            tg.start_soon(batcher.complete, Lease(f"job-{n}", OWNER, 1))
    assert max(sizes) == 4 and sum(sizes) == 13


async def test_held_completions_ride_along_with_the_next_claim() -> None:
    writes, write = recording_writer()
    batcher = CompletionBatcher(write, max_hold=5.0)
    batcher.hold = True
    results: dict[str, bool] = {}

    async def complete(n: int) -> None:
        results[f"job-{n}"] = await batcher.complete(Lease(f"job-{n}", OWNER, 1))

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(complete, n)
        await anyio.wait_all_tasks_blocked()
        carried = batcher.take()  # what a claim statement would carry
        assert [w.lease.job_id for w in carried] == [f"job-{n}" for n in range(4)]
        batcher.settle(carried, {"job-0", "job-1", "job-2"})  # job-3: fenced out
    assert writes == []  # nobody committed on their own
    assert results == {"job-0": True, "job-1": True, "job-2": True, "job-3": False}


async def test_held_completions_write_themselves_when_no_claim_comes() -> None:
    writes, write = recording_writer()
    batcher = CompletionBatcher(write, max_hold=60.0)
    batcher.hold = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.complete, Lease("timed-out", OWNER, 1))
        await anyio.wait_all_tasks_blocked()
        assert writes == []
        batcher.hold = False  # the backlog ended: no claim will carry it
    assert writes == [["timed-out"]]
    quick = CompletionBatcher(write, max_hold=0.01)
    quick.hold = True
    assert await quick.complete(Lease("late", OWNER, 1))  # nobody carried it within max_hold
    assert writes[-1] == ["late"]


async def test_a_failed_carrier_hands_the_error_to_its_waiters() -> None:
    async def write(leases: Sequence[Lease]) -> set[str]:
        raise AssertionError("not reached: the carrier's error goes to the waiters")

    batcher = CompletionBatcher(write, max_hold=60.0)
    batcher.hold = True
    failures: list[BaseException] = []

    async def complete() -> None:
        try:
            await batcher.complete(Lease("j", OWNER, 1))
        except ConnectionError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        await anyio.wait_all_tasks_blocked()
        batcher.settle(batcher.take(), error=ConnectionError("lost"))
    assert len(failures) == 1


async def test_a_completion_given_up_is_withdrawn_not_written_later() -> None:
    """The runner abandons a success whose write stalls (its fence deadline): nothing may
    write it afterwards, neither the next batch nor a claim carrying what is queued."""
    stalls = True

    async def write(leases: Sequence[Lease]) -> set[str]:
        writes.append([lease.job_id for lease in leases])
        if stalls:
            await anyio.sleep_forever()
        return {lease.job_id for lease in leases}

    writes: list[list[str]] = []
    batcher = CompletionBatcher(write)
    with anyio.move_on_after(0.05):
        await batcher.complete(Lease("stalled", OWNER, 1))
    assert writes == [["stalled"]]
    assert batcher.take() == []  # a claim now carries nothing
    stalls = False
    assert await batcher.complete(Lease("next", OWNER, 1))
    assert writes[-1] == ["next"]
    # Given up while held for a claim: withdrawn as well.
    batcher.hold = True
    with anyio.move_on_after(0.01):
        await batcher.complete(Lease("held", OWNER, 1))
    assert batcher.take() == []


def recording_writer() -> tuple[list[list[str]], Callable[[Sequence[Lease]], Awaitable[set[str]]]]:
    """A write that succeeds for every lease and remembers each batch it was given."""
    writes: list[list[str]] = []

    async def write(leases: Sequence[Lease]) -> set[str]:
        writes.append([lease.job_id for lease in leases])
        return {lease.job_id for lease in leases}

    return writes, write


async def test_a_completion_given_up_in_flight_is_not_queued_again_by_a_cancelled_carrier() -> None:
    """The caller gives up while a claim carries its success, and then the claim itself is
    cancelled: the success must not be written by the next batch behind its back."""
    writes, write = recording_writer()
    batcher = CompletionBatcher(write)
    batcher.hold = True
    given_up = anyio.Event()

    async def complete_late() -> None:
        with anyio.move_on_after(0.05):
            await batcher.complete(Lease("late", OWNER, 1))
        given_up.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete_late)
        await anyio.wait_all_tasks_blocked()
        carried = batcher.take()  # a claim carries it
        assert [w.lease.job_id for w in carried] == ["late"]
        await given_up.wait()  # the runner's fence deadline passes meanwhile
    batcher.settle(carried, error=anyio.get_cancelled_exc_class()())  # the claim is cancelled
    batcher.hold = False
    assert await batcher.complete(Lease("next", OWNER, 1))
    assert writes == [["next"]]
