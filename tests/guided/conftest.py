"""Fixtures for guided generation through the CLI: tiny models (pipelines and guidance models) built once, and a
real worker process on this area's own services (Redis DB 3, PostgreSQL `atelier_test_guided`, a blob folder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from engine.registry import Registry
from engine.tiny import ensure_built
from engine.tiny_guided import ensure_built as ensure_guidance_built
from tests.support import redis_url, service_env, worker_process

REDIS_URL = redis_url(3)  # this area's database on the run's Redis
QUEUE = "atelier:test-guided"


@pytest.fixture(scope="session")
def guided_models(models_dir: Path) -> Path:
    registry = Registry.load()
    ensure_built(registry.get("tiny"), models_dir)
    for name in ("tiny-controlnet-canny", "tiny-ip-adapter", "tiny-captioner", "tiny-clip"):
        ensure_guidance_built(registry.get(name), models_dir)
    return models_dir


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def guided_database_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_guided")


@pytest.fixture(scope="package")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, guided_models: Path, guided_database_url: str
) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    root = tmp_path_factory.mktemp("guided-services")
    env = service_env(
        root,
        models_dir=guided_models,
        redis_url=REDIS_URL,
        database_url=guided_database_url,
        queue_name=QUEUE,
    )
    try:
        with worker_process(env, root, QUEUE):
            yield env
    finally:
        client.flushdb()
        client.close()
