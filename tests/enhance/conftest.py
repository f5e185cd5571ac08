"""Fixtures for upscaling and face restoration: one CPU enhancer on the session's model cache, the astronaut
restored once (a random GFPGAN takes seconds per face on a CPU), a runtime on this area's own services
(Redis DB 8, PostgreSQL `atelier_test_enhance`, moto S3) for job tests, and one `atelier worker` process that
the CLI tests enqueue to, the way a deployment runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import torch
from enhance_support import astronaut

from atelier.runtime import Runtime
from atelier.settings import Settings
from engine.enhancer import Enhancer
from engine.faces import FaceRestoration
from engine.registry import Registry
from jobs.worker import create_worker

REDIS_URL = "redis://127.0.0.1:6379/8"  # this area's database on the shared server
CLI_QUEUE = "atelier:test-enhance-cli"
WORKER_START_S = 180  # importing torch, diffusers and spandrel on a busy 2-core machine


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="session")
def enhancer(models_dir: Path) -> Enhancer:
    """A CPU enhancer whose models stay loaded for the whole session."""
    return Enhancer(models_dir, device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="session")
def restored_astronaut(enhancer: Enhancer, registry: Registry) -> FaceRestoration:
    """The astronaut with her face restored by the tiny GFPGAN (the default face restorer's counterpart)."""
    return enhancer.restore_faces(registry.resolve(None, role="face", tiny=True), astronaut())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def enhance_database_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_enhance")


@pytest.fixture(scope="session")
def clean_redis() -> str:
    """This area's Redis database, emptied once at the start of the session (tests then use their own queues)."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(
    tmp_path: Path, models_dir: Path, enhance_database_url: str, moto_s3_endpoint: str, clean_redis: str
) -> AsyncIterator[Runtime]:
    """A runtime on the real services, with a queue of its own, so a test sees only its own jobs."""
    settings = Settings(
        data_dir=tmp_path / "data",
        tiny_models=True,
        model_cache_dir=models_dir,
        redis_url=clean_redis,
        database_url=enhance_database_url,
        queue_name=f"atelier:test-enhance-{uuid.uuid4().hex[:8]}",
        blob_url=f"s3://atelier-test-enhance/{tmp_path.name}",
        s3_endpoint_url=moto_s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="test-key",
        s3_secret_access_key="test-secret",
    )
    await _create_bucket(settings)
    async with Runtime.open(settings) as rt:
        yield rt


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Run a burst worker in this process until the queue is empty."""

    async def run() -> None:
        worker = create_worker(
            runtime.worker_services(),
            queue_name=runtime.settings.queue_name,
            burst=True,
            handle_signals=False,
            poll_delay=0.001,
        )
        try:
            await worker.async_run()
        finally:
            await worker.close()

    return run


@pytest.fixture(scope="session")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, enhance_database_url: str, clean_redis: str
) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses served by one `atelier worker` process started here for the session."""
    client = redis.Redis.from_url(clean_redis)
    root = tmp_path_factory.mktemp("enhance-services")
    env = {
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_REDIS_URL": clean_redis,
        "ATELIER_DATABASE_URL": enhance_database_url,
        "ATELIER_BLOB_URL": str(root / "blobs"),
        "ATELIER_QUEUE_NAME": CLI_QUEUE,
        "ATELIER_DATA_DIR": str(root / "data"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    log = (root / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "atelier", "worker"],
        cwd=root,
        env={**base, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + WORKER_START_S
        while not list(client.scan_iter(match=f"atelier:worker:{CLI_QUEUE}:*")):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{(root / 'worker.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield env
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        client.close()


async def _create_bucket(settings: Settings) -> None:
    import aioboto3

    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.secret("s3_access_key_id"),
        aws_secret_access_key=settings.secret("s3_secret_access_key"),
    ) as s3:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            await s3.create_bucket(Bucket="atelier-test-enhance")
