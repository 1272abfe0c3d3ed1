"""A PgQueuer worker as its own process, at its defaults, for W4's peer figures.

    python -m benchmarks.pgqueuer_worker DSN

Prints "READY" once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import asyncpg


async def main() -> None:
    from pgqueuer import Queries, QueueManager

    conn = await asyncpg.connect(sys.argv[1])
    manager = QueueManager(Queries.from_asyncpg_connection(conn))

    @manager.entrypoint("noop")
    async def noop(job: Any) -> None:
        return None

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
    running = asyncio.create_task(manager.run())
    await asyncio.sleep(0.5)  # its LISTEN and first dequeue are under way
    print("READY", flush=True)
    await running
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
