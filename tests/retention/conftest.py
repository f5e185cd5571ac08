"""Retention end to end: one Discord emulator, the real `atelier discord`, `atelier worker` and `atelier api`
processes on this area's own services (Redis database 29, PostgreSQL `atelier_test_retention`, a bucket on the
loopback S3 server), the tiny models. Time is not waited for: tests backdate rows in the database, and the
retention job itself runs in the worker, enqueued by name as its hourly cron would enqueue it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from atelier.runtime import blob_store_for
from atelier.settings import Settings
from storage.blobs import BlobStore
from tests.discord import conftest as discord_rig
from tests.discord.emulator import DiscordEmulator
from tests.discord.stack import QUEUE, TRAIN_QUEUE, Stack, running_stack
from tests.support import atelier_env, create_bucket, free_port, redis_url, s3_settings

REDIS_URL = redis_url(29)  # this area's database on the run's Redis
DATABASE = "atelier_test_retention"
BUCKET = "atelier-retention"

# The Discord area's own fixtures: one emulator for the package, and the stack's logs printed when a test fails.
emulator = discord_rig.emulator
show_logs_on_failure = discord_rig.show_logs_on_failure


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def services_env(
    emulator: DiscordEmulator,
    postgres_databases,
    moto_s3_endpoint: str,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    workdir = tmp_path_factory.mktemp("retention-stack")
    s3 = {f"ATELIER_{k.upper()}": v for k, v in s3_settings(moto_s3_endpoint).items()}
    env = {
        "ATELIER_REDIS_URL": REDIS_URL,
        "ATELIER_DATABASE_URL": await postgres_databases(DATABASE),
        "ATELIER_BLOB_URL": f"s3://{BUCKET}/blobs",
        **s3,
        "ATELIER_DATA_DIR": str(workdir / "data"),
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_QUEUE_NAME": QUEUE,
        "ATELIER_TRAIN_QUEUE_NAME": TRAIN_QUEUE,
        "ATELIER_MAX_JOBS": "1",
        "ATELIER_DEVICE": "cpu",
        "ATELIER_DISCORD_TOKEN": emulator.bot_token,
        "ATELIER_DISCORD_API_BASE": emulator.api_base,
        "ATELIER_DISCORD_GATEWAY_URL": emulator.gateway_url,
        "ATELIER_DISCORD_GUILD_IDS": str(emulator.guild_id),
        "ATELIER_API_HOST": "127.0.0.1",
        "ATELIER_API_PORT": str(free_port()),
        "ATELIER_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    await create_bucket(_settings(env))
    return atelier_env(env | {"WORKDIR": str(workdir)})


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        **{k.removeprefix("ATELIER_").lower(): v for k, v in env.items() if k.startswith("ATELIER_")}
    )


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def blobs(services_env: dict[str, str]) -> AsyncIterator[BlobStore]:
    """The test's own view of the stack's bucket."""
    store = blob_store_for(_settings(services_env))
    yield store
    await store.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(emulator: DiscordEmulator, services_env: dict[str, str]) -> AsyncIterator[Stack]:
    async def start_api(running: Stack) -> None:
        api = await running.start("api", "api")
        await running._wait(_api_answers(services_env), api, "the API's /healthz")

    async with running_stack(emulator, services_env, REDIS_URL, then=start_api) as running:
        yield running


def api_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['ATELIER_API_PORT']}"


def _api_answers(env: dict[str, str]):
    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{api_url(env)}/healthz") as answer:
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    return answers
