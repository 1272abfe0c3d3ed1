"""Embedding the scheduler in a web app: started in the lifespan, drained on shutdown.

    python examples/starlette_app.py          # serve on http://127.0.0.1:8000
    python examples/starlette_app.py --check  # run it in-process once and verify

POST /signup {"email": ...} enqueues a welcome e-mail job; GET /jobs/{id} shows it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scheduler import ConflictResolution, Scheduler, current_job, task

DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@task(max_retries=3, timeout=30)
async def send_welcome_email(address: str) -> None:
    job = current_job()
    await asyncio.sleep(0.1)  # talk to the mail provider here
    print(f"welcome e-mail sent to {address} (job {job.job_id}, attempt {job.attempt})")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=12)
    try:
        # Every replica of the app runs one scheduler; they share the work.
        async with Scheduler(pool, max_concurrent_jobs=10, shutdown_grace=20) as scheduler:
            app.state.scheduler = scheduler
            yield
        # Leaving the block: stop claiming, let running jobs finish, release the rest.
    finally:
        await pool.close()


async def signup(request: Request) -> JSONResponse:
    body = await request.json()
    scheduler: Scheduler = request.app.state.scheduler
    # Idempotent per address: a double-submitted form does not send two e-mails.
    job_id = await scheduler.schedule(
        send_welcome_email,
        args=(body["email"],),
        job_id=f"welcome:{body['email']}",
        conflict_resolution=ConflictResolution.IGNORE,
    )
    return JSONResponse({"job_id": job_id}, status_code=202)


async def job_status(request: Request) -> JSONResponse:
    scheduler: Scheduler = request.app.state.scheduler
    job = await scheduler.get_job(request.path_params["job_id"])
    if job is None:
        return JSONResponse({"error": "no such job"}, status_code=404)
    return JSONResponse(
        {
            "job_id": job.job_id,
            "status": job.status.value,
            "attempts": job.attempts,
            "last_error": job.last_error,
        }
    )


app = Starlette(
    routes=[Route("/signup", signup, methods=["POST"]), Route("/jobs/{job_id}", job_status)],
    lifespan=lifespan,
)


def check() -> None:
    """Start the app (lifespan included), sign up, and wait for the job to succeed."""
    import time
    import uuid

    from starlette.testclient import TestClient

    with TestClient(app) as client:
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        job_id = client.post("/signup", json={"email": email}).json()["job_id"]
        assert client.post("/signup", json={"email": email}).json()["job_id"] == job_id
        deadline = time.monotonic() + 30
        while (status := client.get(f"/jobs/{job_id}").json()["status"]) != "succeeded":
            assert time.monotonic() < deadline, f"job still {status}"
            time.sleep(0.05)
    print("starlette example OK")


if __name__ == "__main__":
    if "--check" in sys.argv:
        check()
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
