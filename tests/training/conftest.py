"""Fixtures for LoRA training tests: a dataset of 4 small images, zips built in memory, and a runtime on the
real services (Redis DB 12, PostgreSQL `atelier_test_lora`, a local blob folder, or S3 on moto's server for
`s3_runtime`) with the tiny presets."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from redis.asyncio import Redis

from atelier.runtime import Runtime
from atelier.settings import Settings
from tests.support import atelier_env, create_bucket, drain, redis_url, run_burst_worker, s3_settings

REDIS_URL = redis_url(12)
POSTGRES_DATABASE = "atelier_test_lora"


def png(seed: int, size: tuple[int, int] = (72, 64)) -> bytes:
    pixels = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """Four images of different aspect ratios, one with a caption."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    for i, size in enumerate([(64, 64), (96, 64), (64, 96), (80, 72)]):
        (folder / f"img{i}.png").write_bytes(png(i, size))
    (folder / "img0.txt").write_text("a zq drawing of a cat")
    return folder


@pytest.fixture
def dataset_zip() -> bytes:
    return zip_of({f"img{i}.png": png(i) for i in range(4)})


@pytest_asyncio.fixture(loop_scope="session")
async def settings(tmp_path: Path, models_dir: Path, postgres_databases) -> Settings:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return Settings(
        data_dir=tmp_path / "data",
        tiny_models=True,
        model_cache_dir=models_dir,
        lora_dir=tmp_path / "loras",
        redis_url=REDIS_URL,
        database_url=await postgres_databases(POSTGRES_DATABASE),
        blob_url=str(tmp_path / "blobs"),
        poll_delay=0.001,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime.open(settings) as rt:
        yield rt


@pytest_asyncio.fixture(loop_scope="session")
async def s3_runtime(settings: Settings, moto_s3_endpoint: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """`runtime`'s services with the blobs on S3 instead of a folder: what workers on several machines share."""
    on_s3 = Settings(
        **settings.model_dump(
            include={"data_dir", "tiny_models", "model_cache_dir", "lora_dir", "poll_delay"}
        ),
        redis_url=REDIS_URL,
        database_url=settings.database_url,
        blob_url=f"s3://atelier-test-training/{tmp_path.name}",
        **s3_settings(moto_s3_endpoint),
    )
    await create_bucket(on_s3)
    async with Runtime.open(on_s3) as rt:
        yield rt


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The environment of an `atelier` subprocess on the same services as `runtime`."""
    return atelier_env(
        {
            "ATELIER_DATA_DIR": str(settings.data_dir),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(settings.model_cache_dir),
            "ATELIER_LORA_DIR": str(settings.lora_dir),
            "ATELIER_REDIS_URL": REDIS_URL,
            "ATELIER_DATABASE_URL": settings.database_url,
            "ATELIER_BLOB_URL": settings.blob_url,
            "ATELIER_POLL_DELAY": "0.001",
        }
    )


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Drain a queue with a burst worker in this process: the image queue, or the training one (`train=True`)."""
    from atelier.cli_worker import create_train_worker

    async def run(*, train: bool = False) -> None:
        services = runtime.worker_services()
        if train:
            await drain(create_train_worker(runtime.settings, services, burst=True, handle_signals=False))
        else:
            await run_burst_worker(services, runtime.settings.queue_name)

    return run
