"""A private PgBouncer in transaction mode in front of the test server.

Its ini and userlist live in a temp dir; it listens on a free port of 127.0.0.1 and
forwards to the host and port of TEST_DSN. It never touches the server's own config.
PgBouncer refuses to run as root, so as root it runs as the `postgres` OS user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.db import TEST_DSN
from tests.support.processes import free_port

#: Server connections PgBouncer may open per database and user: small, the test server
#: allows 100 connections for every helper and test together.
POOL_SIZE = 6
#: How long PgBouncer gets to accept connections after it was started.
START_SECONDS = 10.0


def pgbouncer_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH may lack.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class PgBouncer:
    def __init__(self, upstream_dsn: str = TEST_DSN, *, pool_size: int = POOL_SIZE) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed: apt-get install -y pgbouncer")
        self.binary = binary
        self.upstream = urlsplit(upstream_dsn)
        self.port = free_port()
        self.pool_size = pool_size
        self.dir = Path(tempfile.mkdtemp(prefix="scheduler-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """TEST_DSN, through PgBouncer."""
        user = self.upstream.username or "postgres"
        netloc = f"{user}@127.0.0.1:{self.port}"
        return urlunsplit(self.upstream._replace(netloc=netloc))

    def _write_config(self) -> Path:
        user = self.upstream.username or "postgres"
        password = self.upstream.password or ""
        host = self.upstream.hostname or "127.0.0.1"
        port = self.upstream.port or 5432
        database = self.upstream.path.lstrip("/") or user
        (self.dir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{database} = host={host} port={port} dbname={database}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            # asyncpg sends these at connect; PgBouncer must pass them through.
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        return ini

    def start(self) -> None:
        ini = self._write_config()
        command = [self.binary, str(ini)]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._accepts():
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not accept connections: {self._log_tail()}")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self) -> str:
        log = self.dir / "pgbouncer.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text[-2000:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # runuser forwards SIGTERM to pgbouncer; the session group catches any straggler.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
