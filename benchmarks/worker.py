"""A scheduler replica as its own process, for the multi-process benchmarks.

    python -m benchmarks.worker DSN SCHEMA [--concurrency 10] [--pool-max N]
        [--claims-out PATH] [--poll-only] [--statement-cache-size N] [--listen-dsn DSN]

Prints "READY" once started; SIGTERM shuts it down gracefully. `--claims-out` writes the
start (epoch s) and wall time (ms) of each of its claims to PATH as a JSON list of
pairs on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

import asyncpg

from benchmarks.tasks import noop, record_latency
from scheduler import Scheduler
from scheduler.metrics import PrometheusMetrics
from scheduler.services.claiming import Claims


async def keep_session(connection: asyncpg.Connection[Any]) -> None:
    """A pool `reset` that sends nothing: the scheduler leaves no session state."""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--metrics", action="store_true", help="with Prometheus metrics (their reads count)"
    )
    parser.add_argument("--pool-max", type=int, default=0, help="default: concurrency + 4")
    parser.add_argument("--claims-out", default="", help="write each claim's ms here")
    parser.add_argument("--poll-only", action="store_true", help="Scheduler(listen=False)")
    parser.add_argument("--poll-interval", type=float, default=None)
    parser.add_argument("--statement-cache-size", type=int, default=None)
    parser.add_argument("--listen-dsn", default=None)
    parser.add_argument(
        "--no-reset",
        action="store_true",
        help="the pool skips asyncpg's reset query on release (docs/scale.md, poll-only)",
    )
    options = parser.parse_args()
    pool_max = options.pool_max or options.concurrency + 4
    cache: dict[str, Any] = {}
    if options.statement_cache_size is not None:
        cache["statement_cache_size"] = options.statement_cache_size
    if options.no_reset:
        cache["reset"] = keep_session
    pool = await asyncpg.create_pool(
        options.dsn,
        min_size=min(2, pool_max),
        max_size=pool_max,
        **cache,
    )
    assert pool is not None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler = Scheduler(
        pool,
        max_concurrent_jobs=options.concurrency,
        schema=options.schema,
        tasks=[noop, record_latency],
        extensions=[PrometheusMetrics()] if options.metrics else [],
        listen=not options.poll_only,
        poll_interval=options.poll_interval,
        listen_dsn=options.listen_dsn,
    )
    claim_ms: list[tuple[float, float]] = []
    if options.claims_out:
        # Each claim pass timed from outside (the policy, whichever statements it runs);
        # its behaviour is unchanged. Patched on the class: the runtime builds the instance.
        claim = Claims.claim

        async def timed_claim(self: Claims, *args: Any, **kwargs: Any) -> Any:
            at, started = time.time(), time.perf_counter()
            try:
                return await claim(self, *args, **kwargs)
            finally:
                claim_ms.append((at, (time.perf_counter() - started) * 1000))

        Claims.claim = timed_claim  # type: ignore[method-assign]
    async with scheduler:
        print("READY", flush=True)
        await stop.wait()
    await pool.close()
    if options.claims_out:
        with open(options.claims_out, "w") as out:
            json.dump(claim_ms, out)


if __name__ == "__main__":
    asyncio.run(main())
