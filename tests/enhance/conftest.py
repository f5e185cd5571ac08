"""Fixtures for upscaling and face restoration: one CPU enhancer on the session's model cache, the astronaut
restored once (a random GFPGAN takes seconds per face on a CPU), a runtime on this area's own services
(Redis DB 8, PostgreSQL `atelier_test_enhance`, moto S3) for job tests, and one `atelier worker` process that
the CLI tests enqueue to, the way a deployment runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import torch
from enhance_support import astronaut

from atelier.runtime import Runtime
from engine.enhancer import Enhancer
from engine.faces import FaceRestoration
from engine.registry import Registry
from tests.support import (
    redis_url,
    run_burst_worker,
    service_env,
    service_runtime,
    worker_process,
)

REDIS_URL = redis_url(8)  # this area's database on the run's Redis
CLI_QUEUE = "atelier:test-enhance-cli"


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="package")
def enhancer(models_dir: Path) -> Enhancer:
    """A CPU enhancer whose models stay loaded while this area runs."""
    return Enhancer(models_dir, device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="package")
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
    async with service_runtime(
        tmp_path,
        models_dir,
        redis_url=clean_redis,
        database_url=enhance_database_url,
        bucket="atelier-test-enhance",
        s3_endpoint=moto_s3_endpoint,
        queue_name=f"atelier:test-enhance-{uuid.uuid4().hex[:8]}",
    ) as rt:
        yield rt


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Run a burst worker in this process until the queue is empty."""

    async def run() -> None:
        await run_burst_worker(runtime.worker_services(), runtime.settings.queue_name)

    return run


@pytest.fixture(scope="package")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, enhance_database_url: str, clean_redis: str
) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses served by one `atelier worker` process started here for this area (it stops when the area is done)."""
    root = tmp_path_factory.mktemp("enhance-services")
    env = service_env(
        root,
        models_dir=models_dir,
        redis_url=clean_redis,
        database_url=enhance_database_url,
        queue_name=CLI_QUEUE,
    )
    with worker_process(env, root, CLI_QUEUE):
        yield env
