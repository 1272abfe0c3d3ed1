"""`scheduler doctor`: check a deployment and say what to fix, one line per check.

Checks, in order (a failed connection skips the rest):
  connection     a connection opens; the server's version
  migrations     the schema's version is this release's
  roles          the connecting role (and every --runtime-role / --producer-role) exists
                 and holds the grants grant_runtime_role() / grant_producer_role() give
  listen/notify  a NOTIFY sent on one pooled connection reaches a LISTEN on another
  pgbouncer      whether a pooler sits between: see `check_pooler`
  clock skew     this host's clock against the server's
  connections    max_connections against the connections in use plus the pools planned
The exit code is 1 when any check fails (warnings do not fail).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from scheduler.cli.failures import explain
from scheduler.postgres import migrate as migrations
from scheduler.postgres.dsn import describe_target
from scheduler.postgres.sql import quote_identifier

#: How long a NOTIFY may take to arrive before the listen check fails.
NOTIFY_DEADLINE_SECONDS = 5.0
#: Clock skew above which the check warns, and above which it fails.
SKEW_WARN_SECONDS = 1.0
SKEW_FAIL_SECONDS = 10.0
#: Transactions the pooler check runs on one client connection.
POOLER_PROBES = 5
CONNECT_TIMEOUT_SECONDS = 10.0

#: What grant_runtime_role() gives that a replica cannot work without (a subset, checked
#: by name so the doctor needs no write access).
RUNTIME_TABLES = (
    "jobs",
    "workers",
    "schedules",
    "job_attempts",
    "job_dependencies",
    "queues",
    "limits",
)
RUNTIME_FUNCTIONS = (
    "claim_jobs",
    "complete_job",
    "end_attempts",
    "fail_job",
    "register_worker",
    "schedule_jobs",
)
#: What grant_producer_role() gives that enqueuing cannot work without.
PRODUCER_FUNCTIONS = ("job_request", "schedule_job", "schedule_jobs", "cancel_job")


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: str  # ok | warn | fail | skip
    text: str


Check = Callable[[], Awaitable[Finding]]


async def run_doctor(
    dsn: str | None,
    schema: str,
    *,
    runtime_roles: list[str] | None = None,
    producer_roles: list[str] | None = None,
    replicas: int = 1,
    pool_size: int = 14,
) -> int:
    findings: list[Finding] = []

    def report(finding: Finding) -> None:
        findings.append(finding)
        print(f"{finding.verdict:<4}  {finding.check:<13}  {finding.text}", flush=True)

    target = describe_target(dsn)
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=3, timeout=CONNECT_TIMEOUT_SECONDS
        )
        assert pool is not None
        version = await pool.fetchval("SHOW server_version")
    except Exception as exc:
        report(Finding("connection", "fail", explain(exc, target)[0]))
        return 1
    try:
        report(Finding("connection", "ok", f"PostgreSQL {version} at {target}"))
        doctor = _Doctor(pool, dsn, schema)
        checks: list[Check] = [
            doctor.migrations,
            lambda: doctor.roles(runtime_roles or [], producer_roles or []),
            doctor.listen_notify,
            doctor.pooler,
            doctor.clock_skew,
            lambda: doctor.connections(replicas, pool_size),
        ]
        for check in checks:
            try:
                report(await check())
            except Exception as exc:  # a check that cannot run is a failed check
                report(Finding("error", "fail", explain(exc, target)[0]))
    finally:
        await pool.close()
    return 1 if any(f.verdict == "fail" for f in findings) else 0


class _Doctor:
    def __init__(self, pool: asyncpg.Pool[Any], dsn: str | None, schema: str) -> None:
        self.pool, self.dsn, self.schema = pool, dsn, schema
        self.q = quote_identifier(schema)
        self.listen_works: bool | None = None  # set by listen_notify()

    async def migrations(self) -> Finding:
        async with self.pool.acquire() as conn:
            version = await migrations.current_version(conn, self.schema)
        latest = migrations.latest_version()
        if version == latest:
            return Finding("migrations", "ok", f"schema {self.schema!r} at version {version}")
        if version == 0:
            text = f"schema {self.schema!r} is not migrated: run `scheduler migrate`"
        elif version < latest:
            text = (
                f"schema {self.schema!r} at version {version}, this release needs {latest}:"
                " run `scheduler migrate`"
            )
        else:
            text = (
                f"schema {self.schema!r} at version {version}, newer than this release"
                f" ({latest}): upgrade scheduler on this host"
            )
        return Finding("migrations", "fail", text)

    async def roles(self, runtime: list[str], producer: list[str]) -> Finding:
        if not await self.pool.fetchval(
            "SELECT to_regproc($1) IS NOT NULL", f"{self.q}.grant_runtime_role"
        ):
            return Finding("roles", "skip", "no role functions in this schema (not migrated)")
        wanted = [(role, "runtime") for role in runtime] + [(role, "producer") for role in producer]
        current = await self.pool.fetchval("SELECT current_user")
        if not runtime:
            wanted.insert(0, (current, "runtime"))
        problems = []
        for role, kind in wanted:
            if not await self.pool.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                problems.append(f"role {role!r} does not exist: CREATE ROLE {role} LOGIN")
                continue
            missing = await self._missing_grants(role, kind)
            if missing:
                problems.append(
                    f"role {role!r} lacks {', '.join(missing[:4])}"
                    f"{' and more' if len(missing) > 4 else ''}:"
                    f" SELECT {self.schema}.grant_{kind}_role('{role}')"
                )
        if problems:
            return Finding("roles", "fail", "; ".join(problems))
        names = ", ".join(f"{role} ({kind})" for role, kind in wanted)
        return Finding("roles", "ok", f"{names}: grants in place")

    async def _missing_grants(self, role: str, kind: str) -> list[str]:
        missing = []
        if not await self.pool.fetchval(
            "SELECT has_schema_privilege($1, $2, 'USAGE')", role, self.schema
        ):
            missing.append(f"USAGE on schema {self.schema}")
        if kind == "runtime":
            for table in RUNTIME_TABLES:
                granted = await self.pool.fetchval(
                    # With a list has_table_privilege() answers whether ANY is held.
                    "SELECT has_table_privilege($1, $2, 'SELECT')"
                    " AND has_table_privilege($1, $2, 'INSERT')"
                    " AND has_table_privilege($1, $2, 'UPDATE')"
                    " AND has_table_privilege($1, $2, 'DELETE')",
                    role,
                    f"{self.q}.{table}",
                )
                if not granted:
                    missing.append(f"writes on {table}")
        functions = RUNTIME_FUNCTIONS if kind == "runtime" else PRODUCER_FUNCTIONS
        for function in functions:
            granted = await self.pool.fetchval(
                "SELECT coalesce(bool_and(has_function_privilege($1, p.oid, 'EXECUTE')), false)"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = $2 AND p.proname = $3",
                role,
                self.schema,
                function,
            )
            if not granted:
                missing.append(f"EXECUTE on {function}()")
        return missing

    async def listen_notify(self) -> Finding:
        """LISTEN on one pooled connection (as the scheduler's listener does), NOTIFY on
        another; the notification must arrive within NOTIFY_DEADLINE_SECONDS."""
        channel = f"scheduler_doctor_{uuid.uuid4().hex[:12]}"
        arrived = asyncio.Event()

        def on_notify(*_: object) -> None:
            arrived.set()

        async with self.pool.acquire() as listening, self.pool.acquire() as sending:
            await listening.add_listener(channel, on_notify)
            try:
                await sending.execute("SELECT pg_notify($1, 'ping')", channel)
                try:
                    await asyncio.wait_for(arrived.wait(), NOTIFY_DEADLINE_SECONDS)
                except asyncio.TimeoutError:
                    self.listen_works = False
                    return Finding(
                        "listen/notify",
                        "fail",
                        f"a NOTIFY did not arrive within {NOTIFY_DEADLINE_SECONDS:g}s: replicas"
                        " fall back to polling (poll_interval); behind PgBouncer in"
                        " transaction mode give the scheduler a direct connection",
                    )
            finally:
                await listening.remove_listener(channel, on_notify)
        self.listen_works = True
        return Finding("listen/notify", "ok", "a NOTIFY reached another connection")

    async def pooler(self) -> Finding:
        """The signals: a pooler listens on a port of its own, so the port the server
        reports (inet_server_port()) differs from the DSN's; in transaction mode successive
        transactions of one client connection may reach different server sessions, so the
        backend pid or a session setting does not survive; and the listen/notify check
        tells whether LISTEN works through it. (A pooler on the server's own port, on
        another host, is seen only by the second and third.)"""
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT set_config('scheduler.doctor_probe', 'kept', false)")
            pids, kept, server_port = set(), True, None
            for _ in range(POOLER_PROBES):
                row = await conn.fetchrow(
                    "SELECT pg_backend_pid() AS pid,"
                    " current_setting('scheduler.doctor_probe', true) AS probe,"
                    " inet_server_port() AS port"
                )
                assert row is not None
                pids.add(row["pid"])
                kept = kept and row["probe"] == "kept"
                server_port = row["port"]
        if len(pids) > 1 or not kept:
            return Finding(
                "pgbouncer",
                "warn",
                "transaction pooling detected (session state does not survive between"
                " transactions): LISTEN needs a direct connection, else replicas poll",
            )
        dsn_port = _dsn_port(self.dsn)
        if server_port is not None and dsn_port is not None and dsn_port != server_port:
            between = (
                f"connected to port {dsn_port} but the server listens on {server_port}: a"
                " pooler (PgBouncer?) or proxy sits between"
            )
            if self.listen_works is False:
                return Finding(
                    "pgbouncer",
                    "warn",
                    between + " and LISTEN does not work through it (transaction pooling?):"
                    " give replicas a direct connection for LISTEN, or they poll",
                )
            return Finding("pgbouncer", "warn", between + "; LISTEN works through it")
        return Finding("pgbouncer", "ok", "direct connection, session state survives")

    async def clock_skew(self) -> Finding:
        before = time.time()
        server = await self.pool.fetchval("SELECT extract(epoch FROM clock_timestamp())")
        after = time.time()
        skew = float(server) - (before + after) / 2
        text = f"server clock {skew:+.3f}s from this host's (round trip {after - before:.3f}s)"
        if abs(skew) > SKEW_FAIL_SECONDS:
            return Finding("clock skew", "fail", text + ": synchronise both clocks (NTP)")
        if abs(skew) > SKEW_WARN_SECONDS:
            return Finding("clock skew", "warn", text + ": synchronise both clocks (NTP)")
        return Finding("clock skew", "ok", text)

    async def connections(self, replicas: int, pool_size: int) -> Finding:
        row = await self.pool.fetchrow(
            "SELECT current_setting('max_connections')::int AS max,"
            " current_setting('superuser_reserved_connections')::int AS reserved,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            " AS used"
        )
        assert row is not None
        usable = row["max"] - row["reserved"]
        planned = replicas * pool_size
        text = (
            f"max_connections {row['max']} ({row['reserved']} reserved), {row['used']} in use;"
            f" {replicas} replica(s) x pool {pool_size} = {planned}"
        )
        if planned + row["used"] > usable:
            return Finding(
                "connections",
                "fail",
                text + ": lower the pool sizes or the replicas, raise max_connections, or"
                " put PgBouncer in front",
            )
        if planned + row["used"] > 0.8 * usable:
            return Finding("connections", "warn", text + ": less than 20% headroom")
        return Finding("connections", "ok", text)


def _dsn_port(dsn: str | None) -> int | None:
    if dsn is None:
        return None
    parsed = urllib.parse.urlsplit(dsn)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    try:
        return parsed.port or int(query.get("port", 5432))
    except ValueError:  # several hosts or ports: no single answer
        return None
