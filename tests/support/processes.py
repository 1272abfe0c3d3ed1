"""Start and stop replica processes and throwaway PostgreSQL clusters for crash tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A directory to keep each stopped replica's log in (as replica-<pid>.log), if set.
KEEP_LOGS = "SCHEDULER_KEEP_REPLICA_LOGS"


class Replica:
    def __init__(self, dsn: str, schema: str, *extra: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="replica-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.replica", dsn, schema, *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until started (or dead)
        if not line.startswith("READY "):
            raise RuntimeError(f"replica failed to start:\n{self.log()}")
        self.worker_id = line.split()[1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        keep = os.environ.get(KEEP_LOGS)
        if keep:  # kept for a post-mortem (the chaos soak's --keep-logs)
            with contextlib.suppress(OSError):
                shutil.move(self.log_path, Path(keep) / f"replica-{self.pid}.log")
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def replicas(dsn: str, schema: str, count: int, *extra: str) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for _ in range(count):
            started.append(Replica(dsn, schema, *extra))
        yield started
    finally:
        for replica in started:
            replica.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path:
    output = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(output.stdout.strip())


class ThrowawayCluster:
    """A private PostgreSQL server in a temp dir, on a free port, owned by `postgres` when
    we are root (PostgreSQL refuses to run as root). Never touches the shared server."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        #: Server settings given at every start (`-c name=value`), beside the port's.
        self.settings = dict(settings or {})
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="scheduler-pg-"))
        self.data = self.dir / "data"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.dir)

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            *args,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """`fast` shuts down cleanly; `immediate` is a crash (recovery on start)."""
        self._pg_ctl("restart", "-m", mode)

    def stop(self) -> None:
        self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def server_pids(self) -> list[int]:
        """The postmaster and its children (backends and helpers)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Every server process stops answering, connections stay open (SIGSTOP)."""
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
