"""A PostgreSQL server of a test's own (the machine's PostgreSQL binaries, a fresh cluster in a temporary folder,
a free TCP port) that the test can stop and start again on the same port and files, as an outage does.

The shared server on 5432 cannot be stopped by one test: other tests and a concurrent run use it. initdb and
postgres refuse to run as root, so under root (CI) the cluster belongs to the `postgres` user and both run as it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.reliability.redis_server import free_port

INITDB_OPTIONS = ("-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (.ci/run installs the postgresql package)")
    return found


class PostgresServer:
    """One cluster in a folder of its own under the system's temporary folder (a test's tmp_path is private to
    root, out of the `postgres` user's reach); `start()` and `stop()` as often as the test likes, `remove()` at
    the end."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")
        subprocess.run(
            [*self._as_postgres, _binary("initdb"), "-D", str(self.folder / "data"), *INITDB_OPTIONS],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        args = [_binary("postgres"), "-D", str(self.folder / "data"), "-p", str(self.port), "-h", "127.0.0.1"]
        args += ["-k", str(self.folder), "-c", "fsync=off", "-c", "max_connections=100"]
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen([*self._as_postgres, *args], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while subprocess.run(
            [_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
        ).returncode:
            assert time.monotonic() < deadline and self.process.poll() is None, self.log()
            time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster): clients are disconnected, the port closes."""
        if self.process is None or self.process.poll() is not None:
            return
        self._signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()

    def _signal(self, signum: int) -> None:
        # Under runuser the postmaster is runuser's child; signal the postmaster, whose pid it writes down.
        pid_file = self.folder / "data" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            assert self.process is not None
            pid = self.process.pid
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
