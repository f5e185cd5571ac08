"""Quotas' fixtures: a Runtime on the real services (Redis database 7, PostgreSQL `atelier_test_quotas`), emptied
per test, plus in-process arq workers and helpers to enqueue as a tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from atelier.runtime import Runtime
from atelier.settings import Settings
from jobs.queue import Enqueued, enqueue
from jobs.specs import ReplyTarget, imagine_spec
from quotas.admin import Admin
from storage.models import Tenant, get_or_create_tenant, get_or_create_user
from tests.support import atelier_env, empty_database, run_burst_worker
from tests.support import redis_url as run_redis_url

REDIS_URL = run_redis_url(7)  # this area's database on the run's Redis; flushed per test
CLI = ReplyTarget(platform="cli")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def quotas_postgres_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_quotas")


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_url(quotas_postgres_url: str) -> str:
    """The session's database with every table emptied (the schema and its migrations stay)."""
    return await empty_database(quotas_postgres_url)


@pytest_asyncio.fixture(loop_scope="session")
async def redis_url() -> str:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return REDIS_URL


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, postgres_url: str, redis_url: str) -> dict[str, str]:
    """Environment for an `atelier` subprocess on the same services as `runtime`."""
    return atelier_env(
        {
            "ATELIER_REDIS_URL": redis_url,
            "ATELIER_DATABASE_URL": postgres_url,
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(env: dict[str, str]) -> AsyncIterator[Runtime]:
    settings = Settings(
        **{k.removeprefix("ATELIER_").lower(): v for k, v in env.items() if k.startswith("ATELIER_")}
    )
    async with Runtime.open(settings) as rt:
        yield rt


@pytest.fixture
def admin(runtime: Runtime) -> Admin:
    return Admin(runtime.redis, runtime.settings.queue_name)


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Run one in-process burst worker taking one job at a time until the queue is empty."""

    async def run(**overrides: object) -> None:
        options = {"max_jobs": 1, **overrides}
        await run_burst_worker(runtime.worker_services(), runtime.settings.queue_name, **options)

    return run


@pytest.fixture
def imagine(runtime: Runtime) -> Callable:
    """`await imagine(tenant_ref, user_id, request_id, **spec_options) -> Enqueued` as a chat command would."""

    async def submit(tenant: str | Tenant, user: str, request_id: str, **options: object) -> Enqueued:
        options = {"prompt": "a red fox", "seed": 1, "size": "64x64", "steps": 1, **options}
        spec = imagine_spec(runtime.registry, tiny=True, **options)
        if isinstance(tenant, str):
            platform, _, external_id = tenant.partition(":")
            tenant = await get_or_create_tenant(platform, external_id)
        return await enqueue(
            runtime.redis,
            spec,
            request_id=request_id,
            reply_target=CLI,
            queue_name=runtime.settings.queue_name,
            tenant=tenant,
            user=await get_or_create_user(tenant, user),
        )

    return submit
