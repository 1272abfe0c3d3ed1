"""`scheduler` / `python -m scheduler`: the operator's command line.

parser.py   the commands, options and help texts; option values parsed to one-line errors
commands.py the commands that read and change the database (and enqueue)
worker.py   `scheduler worker`
doctor.py   `scheduler doctor`
failures.py what an error prints (one line) and its exit code
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from scheduler.cli.commands import run
from scheduler.cli.failures import explain
from scheduler.cli.parser import build_parser, worker_settings
from scheduler.postgres.dsn import describe_target, normalize_dsn


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(run(options))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        try:
            target = describe_target(normalize_dsn(options.dsn))
        except Exception:
            target = "the DSN given"
        message, code = explain(exc, target)
        print(f"error: {message}", file=sys.stderr)
        return code


__all__ = ["build_parser", "main", "worker_settings"]
