"""Fixtures for inpainting and variations: tiny models built once, a CPU pipeline cache, input images, and a
real worker process on this area's own services (Redis DB 10, PostgreSQL `atelier_test_edit`, a blob folder)
that the `atelier` CLI tests enqueue to, the way a deployment runs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import torch
from PIL import Image

from engine.cache import PipelineCache
from engine.registry import Registry
from engine.tiny import ensure_built
from tests.support import redis_url, run_atelier, service_env, worker_process

REDIS_URL = redis_url(10)  # this area's database on the run's Redis
QUEUE = "atelier:test-edit"
TINY = ["tiny-inpaint", "tiny-sdxl-inpaint", "tiny-flux-fill", "tiny", "tiny-sdxl", "tiny-flux"]


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="session")
def edit_models(models_dir: Path, registry: Registry) -> Path:
    """The session's model cache with every tiny preset these tests run already built."""
    for name in TINY:
        ensure_built(registry.get(name), models_dir)
    return models_dir


@pytest.fixture(scope="package")
def cache(edit_models: Path) -> PipelineCache:
    return PipelineCache(cache_dir=edit_models, device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture
def write_image(tmp_path: Path) -> Callable[[str, Image.Image], Path]:
    def write(name: str, image: Image.Image) -> Path:
        path = tmp_path / name
        image.save(path)
        return path

    return write


@pytest.fixture(scope="session")
def atelier() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_atelier


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def edit_database_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_edit")


@pytest.fixture(scope="package")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, edit_models: Path, edit_database_url: str
) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses served by one `atelier worker` process started here for this area (it stops when the area is done)."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    root = tmp_path_factory.mktemp("edit-services")
    env = service_env(
        root, models_dir=edit_models, redis_url=REDIS_URL, database_url=edit_database_url, queue_name=QUEUE
    )
    try:
        with worker_process(env, root, QUEUE):
            yield env
    finally:
        client.flushdb()
        client.close()
