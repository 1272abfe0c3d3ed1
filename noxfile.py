"""The one entry point for checks: `nox -s lint typecheck tests examples` (the default).

Set SCHEDULER_TEST_DSN / SCHEDULER_DSN to use another PostgreSQL than the local one.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples"]
nox.options.reuse_existing_virtualenvs = True

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).parent

DROP_SCHEMA = """
import asyncio, os, sys
import asyncpg
from scheduler.postgres.sql import quote_identifier, validate_schema_name
async def main():
    conn = await asyncpg.connect(os.environ.get("SCHEDULER_DSN"))
    await conn.execute("DROP SCHEMA IF EXISTS %s CASCADE"
                       % quote_identifier(validate_schema_name(sys.argv[1])))
    await conn.close()
asyncio.run(main())
"""


def _dsn_env() -> dict[str, str]:
    dsn = os.environ.get("SCHEDULER_DSN") or os.environ.get("SCHEDULER_TEST_DSN") or LOCAL_DSN
    return {"SCHEDULER_DSN": dsn, "SCHEDULER_TEST_DSN": os.environ.get("SCHEDULER_TEST_DSN", dsn)}


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "scheduler", "tests", "examples", "benchmarks", "noxfile.py")
    session.run(
        "ruff", "format", "--check", "scheduler", "tests", "examples", "benchmarks", "noxfile.py"
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,examples,dev,prometheus,otel,sqlalchemy,psycopg,django,fastapi]")
    session.run("mypy")
    session.run("mypy", "--python-version", "3.11", "examples/quickstart.py")


def _ensure_chromium(session: nox.Session) -> None:
    """The dashboard's browser tests drive Debian's chromium (Playwright never downloads a
    browser of its own): install it when this machine lacks it."""
    if shutil.which("chromium"):
        return
    if os.geteuid() != 0:
        session.error("the browser tests need chromium: run `sudo apt-get install -y chromium`")
    apt = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", external=True, env=apt)
    session.run("apt-get", "install", "-y", "-q", "chromium", external=True, env=apt)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against a real PostgreSQL, including the multi-process tests, the
    metrics and tracing ones (their extras are installed here) and the dashboard in a
    headless browser."""
    session.install("-e", ".[test,prometheus,otel,sqlalchemy,psycopg,django,fastapi]")
    _ensure_chromium(session)
    session.run("pytest", *session.posargs, env=_dsn_env())


@nox.session
def screenshots(session: nox.Session) -> None:
    """The README's dashboard screenshots, written to docs/images (not in the default run)."""
    session.install("-e", ".[test]")
    _ensure_chromium(session)
    session.run("python", "-m", "tests.browser.screenshots", *session.posargs, env=_dsn_env())


@nox.session
def faults(session: nox.Session) -> None:
    """Only the fault-injection scenarios (also part of `tests`)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/faults", *session.posargs, env=_dsn_env())


@nox.session
def soak(session: nox.Session) -> None:
    """The chaos soak (minutes long, not in the default run): `nox -s soak -- --minutes 10`."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.chaos.soak", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite with peers (minutes; not in the default run):
    `nox -s bench -- --repeats 3`. Prints JSON lines, the README table and the targets."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.run", *session.posargs, env=_dsn_env())


@nox.session
def bench_backends(session: nox.Session) -> None:
    """The cost of process and HTTP jobs beside in-loop async jobs (about a minute; not in
    the default run): `nox -s bench_backends -- --jobs 500`."""
    session.install("-e", ".[http,examples]")
    session.run("python", "-m", "benchmarks.backends", *session.posargs, env=_dsn_env())


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example, and check the README shows them as they are."""
    session.install("-e", ".[examples,prometheus,otel,fastapi,django]")
    session.install("pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3")
    env = _dsn_env()
    schema = f"examples_{uuid.uuid4().hex[:8]}"
    checked = ("examples/starlette_app.py", "examples/fastapi_app.py")
    try:
        scripts = (
            "examples/quickstart.py",
            "examples/tour.py",
            "examples/recurring.py",
            "examples/starlette_app.py",
            "examples/observability.py",
            "examples/fastapi_app.py",
            "examples/django_app/check.py",
        )
        for script in scripts:
            args = ["--check"] if script in checked else []
            session.run("python", script, *args, env={**env, "SCHEDULER_SCHEMA": schema})
        session.run(
            "pytest", "-q", "-p", "no:cacheprovider", "examples/test_with_scheduler.py", env=env
        )
    finally:
        session.run("python", "-c", DROP_SCHEMA, schema, env=env)
    docs(session)


@nox.session
def docs(session: nox.Session) -> None:
    """Every README code block that names an example file must match that file."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(# (examples/[\w/]+\.py)\n.*?)```", readme, re.S)
    if not blocks:
        session.error("README.md shows no example file")
    for block, path in blocks:
        body = block.split("\n", 1)[1]
        if body.strip() not in (ROOT / path).read_text():
            session.error(f"README.md's copy of {path} differs from the file")
    session.log(f"README.md shows {len(blocks)} example file(s) as they are")


@nox.session
def demo(session: nox.Session) -> None:
    """The Quick Start, then a tour of jobs actually running, against the local PostgreSQL
    on a fresh `scheduler_demo` schema."""
    session.install("-e", ".")
    env = {**_dsn_env(), "SCHEDULER_SCHEMA": "scheduler_demo"}
    session.run("python", "-c", DROP_SCHEMA, "scheduler_demo", env=env)
    session.run("python", "examples/quickstart.py", env=env)
    session.run("python", "-m", "scheduler", "status", env=env)
    session.run("python", "examples/tour.py", env=env)
    session.run("python", "examples/recurring.py", env=env)
