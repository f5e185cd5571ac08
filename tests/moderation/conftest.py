"""A `Runtime` on the real services (Redis DB 38, PostgreSQL, the loopback S3) with tiny models, for the
safety moderation tests (issue 17, item 2)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from atelier.runtime import Runtime
from jobs import prompt_check
from tests.support import emptied_redis, redis_url, run_burst_worker, service_runtime

REDIS_URL = redis_url(38)


@pytest.fixture
def prompt_classifier() -> str:
    """The prompt-safety preset (settings.prompt_classifier): the tiny default; a test parametrizes it."""
    return ""


@pytest.fixture
def prompt_check_wait_s() -> float:
    """How long the runtime's front-end waits for a worker to classify a prompt (settings.prompt_check_wait_s)."""
    return 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(
    prompt_classifier: str,
    prompt_check_wait_s: float,
    tmp_path: Path,
    models_dir: Path,
    postgres_databases,
    moto_s3_endpoint: str,
) -> AsyncIterator[Runtime]:
    async with service_runtime(
        tmp_path,
        models_dir,
        redis_url=await emptied_redis(REDIS_URL),
        database_url=await postgres_databases("atelier_test_moderation"),
        bucket="atelier-moderation",
        s3_endpoint=moto_s3_endpoint,
        prompt_classifier=prompt_classifier,
        prompt_check_wait_s=prompt_check_wait_s,
    ) as rt:
        yield rt


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    async def run() -> None:
        await run_burst_worker(runtime.worker_services(), runtime.settings.queue_name)

    return run


@pytest_asyncio.fixture(loop_scope="session")
async def serving(runtime: Runtime) -> AsyncIterator[None]:
    """This process answering prompt checks as a worker does (jobs.prompt_check.serve, its local classifier)."""
    classifier = prompt_check.local_classifier()
    assert classifier is not None
    await classifier.verdict("warm-up")  # loaded before a test's first check starts its bounded wait
    task = asyncio.create_task(prompt_check.serve(runtime.redis, classifier))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
