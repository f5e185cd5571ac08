"""A `Runtime` on either backend: the embedded defaults, or the real services (Redis, PostgreSQL, S3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from atelier.runtime import Runtime
from atelier.settings import Settings
from tests.support import create_bucket, redis_url, run_burst_worker, s3_settings

REDIS_URL = redis_url(1)  # this area's database on the run's Redis; flushed per test


@pytest_asyncio.fixture(loop_scope="session")
async def flushed_redis() -> AsyncIterator[str]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    yield REDIS_URL


@pytest.fixture(params=["embedded", "services"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="session")
async def settings(
    backend: str,
    tmp_path: Path,
    models_dir: Path,
    postgres_databases,
    moto_s3_endpoint: str,
    flushed_redis: str,
) -> Settings:
    """Settings for one test: embedded (SQLite, local blobs, Atelier's own Redis) or the real services."""
    common = {"data_dir": tmp_path / "data", "tiny_models": True, "model_cache_dir": models_dir}
    if backend == "embedded":
        return Settings(**common, database_url=f"sqlite://{tmp_path}/data/atelier.db")
    return Settings(
        **common,
        redis_url=flushed_redis,
        database_url=await postgres_databases("atelier_test_jobs"),
        blob_url=f"s3://atelier-test/{tmp_path.name}",
        **s3_settings(moto_s3_endpoint),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    if settings.blob_url.startswith("s3://"):
        await create_bucket(settings)
    async with Runtime.open(settings) as rt:
        yield rt


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Run a burst worker in this process until the queue is empty (arq's own testing style)."""

    async def run(max_batch: int | None = None, **overrides: object) -> None:
        services = runtime.worker_services()
        if max_batch is not None:
            services.max_batch = max_batch
        await run_burst_worker(services, runtime.settings.queue_name, **overrides)

    return run
