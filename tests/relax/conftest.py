"""The relax lane's fixtures: Redis database 35 (flushed per test), PostgreSQL `atelier_test_relax` (emptied per
test), a tiers file with a relax tier whose fast budget is nothing, and a Runtime on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from atelier.runtime import Runtime
from atelier.settings import Settings
from tests.support import atelier_env, empty_database
from tests.support import redis_url as run_redis_url

REDIS_URL = run_redis_url(35)

# `spent`: relax allowed, a fast budget of 0 GPU seconds (spent from the start); `hard`: the same without relax.
# New CLI tenants start on `spent`; Discord ones on `priority` (a tenant with fast budget to spare).
TIERS_TOML = """
[tiers.spent]
weight = 1
gpu_seconds_per_month = 0
relax = true
[tiers.hard]
weight = 1
gpu_seconds_per_month = 0
[tiers.roomy]
weight = 1
gpu_seconds_per_month = 100000
gpu_seconds_per_user_per_month = 0
relax = true
[new_tenants]
cli = "spent"
discord = "priority"
"""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def relax_postgres_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_relax")


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_url(relax_postgres_url: str) -> str:
    return await empty_database(relax_postgres_url)


@pytest_asyncio.fixture(loop_scope="session")
async def redis_url() -> str:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return REDIS_URL


@pytest.fixture
def tiers_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(TIERS_TOML)
    return path


@pytest.fixture
def env(
    tmp_path: Path, models_dir: Path, postgres_url: str, redis_url: str, tiers_file: Path
) -> dict[str, str]:
    return atelier_env(
        {
            "ATELIER_REDIS_URL": redis_url,
            "ATELIER_DATABASE_URL": postgres_url,
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(models_dir),
            "ATELIER_TIERS_FILE": str(tiers_file),
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(env: dict[str, str]) -> AsyncIterator[Runtime]:
    settings = Settings(
        **{k.removeprefix("ATELIER_").lower(): v for k, v in env.items() if k.startswith("ATELIER_")}
    )
    async with Runtime.open(settings) as rt:
        yield rt
