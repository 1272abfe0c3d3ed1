"""The scheduler inside a FastAPI application: started in the lifespan, drained on exit.

    python examples/fastapi_app.py          # serve on http://127.0.0.1:8000
    python examples/fastapi_app.py --check  # run it in-process once and verify

POST /signup {"email": ...} enqueues a welcome e-mail job once per address;
GET /jobs/{job_id} shows it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from scheduler import ConflictResolution, Scheduler, current_job, task

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@task(max_retries=3, timeout=30)
async def send_welcome_email(address: str) -> None:
    job = current_job()
    await asyncio.sleep(0.1)  # talk to the mail provider here
    print(f"welcome e-mail sent to {address} (job {job.job_id}, attempt {job.attempt})")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with (
        asyncpg.create_pool(DSN, min_size=2, max_size=12) as pool,
        Scheduler(pool, max_concurrent_jobs=10, shutdown_grace=20) as scheduler,
    ):
        app.state.scheduler = scheduler
        yield
    # Leaving the block: stop claiming, let running jobs finish, release the rest, close.


app = FastAPI(lifespan=lifespan)


class SignUp(BaseModel):
    email: str


@app.post("/signup", status_code=202)
async def signup(body: SignUp, request: Request) -> dict[str, str]:
    scheduler: Scheduler = request.app.state.scheduler
    # Idempotent per address: a double-submitted form does not send two e-mails.
    job_id = await scheduler.schedule(
        send_welcome_email,
        args=(body.email,),
        job_id=f"welcome:{body.email}",
        conflict_resolution=ConflictResolution.IGNORE,
    )
    return {"job_id": job_id}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request) -> dict[str, object]:
    scheduler: Scheduler = request.app.state.scheduler
    job = await scheduler.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return {"job_id": job.job_id, "status": job.status.value, "attempts": job.attempts}


def check() -> None:
    """Start the app (lifespan included), sign up twice, and wait for the one job."""
    import time
    import uuid

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        job_id = client.post("/signup", json={"email": email}).json()["job_id"]
        assert client.post("/signup", json={"email": email}).json()["job_id"] == job_id
        deadline = time.monotonic() + 30
        while (status := client.get(f"/jobs/{job_id}").json()["status"]) != "succeeded":
            assert time.monotonic() < deadline, f"job still {status}"
            time.sleep(0.05)
    print("fastapi example OK")


if __name__ == "__main__":
    if "--check" in sys.argv:
        check()
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
