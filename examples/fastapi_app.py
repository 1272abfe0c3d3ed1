"""FastAPI + SQLAlchemy: the job is enqueued in the same transaction as the order.

    python examples/fastapi_app.py          # serve on http://127.0.0.1:8000
    python examples/fastapi_app.py --check  # run it in-process once and verify

POST /orders {"item": ...} stores an order and enqueues its receipt job in one
transaction: if the request fails after enqueueing, neither exists.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from scheduler import Scheduler, task

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
Session = async_sessionmaker(engine, expire_on_commit=False)


@task(max_retries=3)
async def send_receipt(order_id: int) -> None:
    await asyncio.sleep(0.05)  # talk to the mail provider here
    print(f"receipt sent for order {order_id}")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE IF NOT EXISTS example_orders (id serial PRIMARY KEY, item text)")
        )
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=10)
    try:
        async with Scheduler(pool) as scheduler:  # runs jobs in this process, too
            app.state.scheduler = scheduler
            yield
    finally:
        await pool.close()
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


def get_scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


async def get_session() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


class OrderIn(BaseModel):
    item: str
    fail_after_enqueue: bool = False  # to show the rollback


@app.post("/orders", status_code=201)
async def create_order(
    order: OrderIn, session: SessionDep, scheduler: SchedulerDep
) -> dict[str, object]:
    async with session.begin():  # commits both, or neither
        result = await session.execute(
            text("INSERT INTO example_orders (item) VALUES (:item) RETURNING id"),
            {"item": order.item},
        )
        order_id = result.scalar_one()
        job_id = await scheduler.schedule(
            send_receipt, args=[order_id], job_id=f"receipt-{order_id}", connection=session
        )
        if order.fail_after_enqueue:
            raise HTTPException(409, detail={"order_id": order_id})
    return {"order_id": order_id, "job_id": job_id}


async def check() -> None:
    """Serve the app in-process (lifespan included): a committed order gets its receipt,
    a failed one leaves neither order nor job."""
    import httpx

    from scheduler import JobStatus, testing

    async with app.router.lifespan_context(app):
        scheduler: Scheduler = app.state.scheduler
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            created = (await client.post("/orders", json={"item": "book"})).json()
            failed = await client.post("/orders", json={"item": "x", "fail_after_enqueue": True})
        assert failed.status_code == 409, failed.text
        finished = await testing.run_due(scheduler)
        assert [job.job_id for job in finished] == [created["job_id"]], finished
        assert finished[0].status is JobStatus.SUCCEEDED
        lost_id = failed.json()["detail"]["order_id"]
        assert await scheduler.get_job(f"receipt-{lost_id}") is None
        async with Session() as session:
            found = await session.execute(
                text("SELECT count(*) FROM example_orders WHERE id = :id"), {"id": lost_id}
            )
            assert found.scalar_one() == 0
    async with engine.begin() as conn:  # leave the database as we found it
        await conn.execute(text("DROP TABLE example_orders"))
    print("fastapi example OK")


if __name__ == "__main__":
    if "--check" in sys.argv:
        asyncio.run(check())
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
