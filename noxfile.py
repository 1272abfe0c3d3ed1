"""The one entry point for checks: `nox -s lint typecheck tests examples docs wheel` (the
default).

Set SCHEDULER_TEST_DSN / SCHEDULER_DSN to use another PostgreSQL than the local one.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import uuid
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples", "docs", "wheel"]
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


def _ensure_pgbouncer(session: nox.Session) -> None:
    """The PgBouncer tests run Debian's pgbouncer in front of the test server (their own
    port and config, tests/support/pgbouncer.py): install it when this machine lacks it."""
    if shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin"):
        return
    if os.geteuid() != 0:
        session.error("the PgBouncer tests need pgbouncer: run `sudo apt-get install -y pgbouncer`")
    apt = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", external=True, env=apt)
    session.run("apt-get", "install", "-y", "-q", "pgbouncer", external=True, env=apt)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against a real PostgreSQL, including the multi-process tests, the
    metrics and tracing ones (their extras are installed here), the dashboard in a
    headless browser and the scheduler through PgBouncer."""
    session.install("-e", ".[test,prometheus,otel,sqlalchemy,psycopg,django,fastapi]")
    _ensure_chromium(session)
    _ensure_pgbouncer(session)
    session.run("pytest", *session.posargs, env=_dsn_env())


@nox.session
def unit(session: nox.Session) -> None:
    """The unit tier alone, in seconds and with no PostgreSQL: the DSNs point at a closed
    port, and tests/unit/conftest.py fails any test that opens a connection."""
    session.install("-e", ".[test,prometheus,otel,sqlalchemy,psycopg,django,fastapi]")
    closed = "postgresql://postgres@127.0.0.1:1/none"
    env = {"SCHEDULER_DSN": closed, "SCHEDULER_TEST_DSN": closed}
    session.run("pytest", "tests/unit", *session.posargs, env=env)


@nox.session
def screenshots(session: nox.Session) -> None:
    """The dashboard screenshots of the docs, written to docs/images (not in the default run)."""
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
    `nox -s bench -- --repeats 3`. Prints JSON lines, the table of
    docs/benchmarks.md and the targets."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.run", *session.posargs, env=_dsn_env())


@nox.session
def bench_pgbouncer(session: nox.Session) -> None:
    """Issue 21's PgBouncer targets (W2 drain and W3 idle start latency, direct and through
    a private PgBouncer in transaction mode with listen_dsn; not in the default run):
    `nox -s bench_pgbouncer -- --repeats 3`."""
    session.install("-e", ".[bench]")
    _ensure_pgbouncer(session)
    session.run("python", "-m", "benchmarks.pgbouncer", *session.posargs, env=_dsn_env())


@nox.session
def bench_backends(session: nox.Session) -> None:
    """The cost of process and HTTP jobs beside in-loop async jobs (about a minute; not in
    the default run): `nox -s bench_backends -- --jobs 500`."""
    session.install("-e", ".[http,examples]")
    session.run("python", "-m", "benchmarks.backends", *session.posargs, env=_dsn_env())


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example, and check the README and the docs show them as they are."""
    session.install("-e", ".[examples,prometheus,otel,fastapi,django]")
    session.install("pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3")
    env = _dsn_env()
    checked = ("examples/starlette_app.py", "examples/fastapi_app.py")
    scripts = (
        "examples/hello.py",
        "examples/quickstart.py",
        "examples/tour.py",
        "examples/recurring.py",
        "examples/starlette_app.py",
        "examples/fastapi_app.py",
        "examples/observability.py",
        "examples/django_app/check.py",
    )
    # A schema each: the examples are independent (two of them name jobs `receipt-<id>`).
    run = uuid.uuid4().hex[:8]
    schemas = [f"examples_{run}_{number}" for number in range(len(scripts))]
    try:
        for script, schema in zip(scripts, schemas, strict=True):
            args = ["--check"] if script in checked else []
            session.run("python", script, *args, env={**env, "SCHEDULER_SCHEMA": schema})
        session.run(
            "pytest", "-q", "-p", "no:cacheprovider", "examples/test_with_scheduler.py", env=env
        )
    finally:
        for schema in schemas:
            session.run("python", "-c", DROP_SCHEMA, schema, env=env, silent=True)
    _check_example_blocks(session)


def _check_example_blocks(session: nox.Session) -> None:
    """Every code block of README.md and docs/ that starts with `# examples/<file>.py` must
    be a verbatim part of that file, so what the pages show is what `examples` runs."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    shown = 0
    for page in pages:
        text = page.read_text()
        name = page.relative_to(ROOT)
        for block, path in re.findall(r"```python\n(# (examples/[\w/]+\.py)\n.*?)```", text, re.S):
            body = block.split("\n", 1)[1]
            example = ROOT / path
            if not example.is_file():
                session.error(f"{name} shows {path}, which does not exist")
            if body.strip() not in example.read_text():
                session.error(f"{name}'s copy of {path} differs from the file")
            shown += 1
    if shown == 0:
        session.error("no page shows an example file")
    session.log(f"README.md and docs/ show {shown} example block(s) as they are")


def _check_api_reference(session: nox.Session) -> None:
    """docs/reference/api.md shows every public name (scheduler.__all__), and only those."""
    init = ast.parse((ROOT / "scheduler" / "__init__.py").read_text())
    public: set[str] = set()
    for node in init.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            public = set(ast.literal_eval(node.value))
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    shown = set(re.findall(r"^::: scheduler\.(\w+)$", page, re.M))
    if shown != public:
        session.error(
            f"docs/reference/api.md: add {sorted(public - shown)}, drop {sorted(shown - public)}"
        )


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (a broken link, anchor or API reference fails
    it) into site/, after checking that every example block matches its file.
    `nox -s docs -- serve` serves it on http://127.0.0.1:8000 instead."""
    _check_example_blocks(session)
    session.install("-e", ".[docs]")
    _check_api_reference(session)
    env = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:], env=env)
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs, env=env)


@nox.session(reuse_venv=False)
def wheel(session: nox.Session) -> None:
    """Issue 23's test of the name and the first page: build the wheel, install it (not
    editable, with its package data) in a fresh virtualenv, and run the getting-started
    page as written, in a directory outside the repository, on a throwaway schema."""
    page = (ROOT / "docs" / "getting-started.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", page, re.S)
    installs = [line for lang, body in blocks if lang == "bash" for line in body.splitlines()]
    if "pip install pgcadence" not in installs:
        session.error("docs/getting-started.md no longer installs pgcadence")
    program = next(body for lang, body in blocks if lang == "python")
    commands = [
        line.split("#")[0].strip()
        for lang, body in blocks
        if lang == "bash"
        for line in body.splitlines()
        if line.startswith("scheduler ") and "JOB_ID" not in line
    ]
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT))
    (built,) = dist.glob("pgcadence-*.whl")
    session.install(str(built))
    (tmp / "hello.py").write_text(program)
    env = {**_dsn_env(), "SCHEDULER_SCHEMA": f"wheel_{uuid.uuid4().hex[:8]}"}
    session.chdir(tmp)
    try:
        output = session.run("python", "hello.py", env=env, silent=True) or ""
        if "succeeded 5" not in output:
            session.error(f"hello.py printed {output!r}, not 'succeeded 5'")
        for command in commands:
            session.run(*command.split(), env=env)
    finally:
        session.run("python", "-c", DROP_SCHEMA, env["SCHEDULER_SCHEMA"], env=env)
    session.log(f"{built.name} ran the getting-started page: succeeded 5")


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
