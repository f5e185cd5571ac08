"""Fixtures for inpainting and variations: tiny models built once, a CPU pipeline cache, input images, and a
real worker process on this area's own services (Redis DB 10, PostgreSQL `atelier_test_edit`, a blob folder)
that the `atelier` CLI tests enqueue to, the way a deployment runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import torch
from edit_support import run_atelier
from PIL import Image

from engine.cache import PipelineCache
from engine.registry import Registry
from engine.tiny import ensure_built

REDIS_URL = "redis://127.0.0.1:6379/10"  # this area's database on the shared server
QUEUE = "atelier:test-edit"
TINY = ["tiny-inpaint", "tiny-sdxl-inpaint", "tiny-flux-fill", "tiny", "tiny-sdxl", "tiny-flux"]
WORKER_START_S = 180  # importing torch and diffusers on a busy 2-core machine


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="session")
def edit_models(models_dir: Path, registry: Registry) -> Path:
    """The session's model cache with every tiny preset these tests run already built."""
    for name in TINY:
        ensure_built(registry.get(name), models_dir)
    return models_dir


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def worker_env(
    tmp_path_factory: pytest.TempPathFactory, edit_models: Path, edit_database_url: str
) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses served by one `atelier worker` process started here for the session."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    root = tmp_path_factory.mktemp("edit-services")
    env = {
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(edit_models),
        "ATELIER_REDIS_URL": REDIS_URL,
        "ATELIER_DATABASE_URL": edit_database_url,
        "ATELIER_BLOB_URL": str(root / "blobs"),
        "ATELIER_QUEUE_NAME": QUEUE,
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
        while not list(client.scan_iter(match=f"atelier:worker:{QUEUE}:*")):
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
        client.flushdb()
        client.close()
