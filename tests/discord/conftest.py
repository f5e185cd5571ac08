"""One Discord emulator, one `atelier discord` bot and one `atelier worker`, shared by the package's tests.

The bot and the worker are the real entry points, run as subprocesses against the emulator, the run's Redis (DB 5),
a real PostgreSQL database (`atelier_test_discord` plus the run's suffix), a local blob folder and the tiny models. Starting them costs
seconds on two cores, so they are started once; tests that need a quiet queue wait for it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator
from tests.discord.stack import QUEUE, TRAIN_QUEUE, Stack, running_stack
from tests.support import atelier_env, redis_url

REDIS_URL = redis_url(5)  # this area's database on the run's Redis
DATABASE = "atelier_test_discord"


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def emulator() -> AsyncIterator[DiscordEmulator]:
    server = DiscordEmulator()
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def services_env(
    emulator: DiscordEmulator, postgres_databases, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment both processes (and reference CLI runs) get: real services, emulated Discord."""
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    workdir = tmp_path_factory.mktemp("discord-stack")
    # Both test servers start on the priority tier: the suite makes hundreds of images in one day and month,
    # and its GPU-second estimates come from tiny 64² jobs, which extrapolate to thousands of seconds for the
    # 512², 50-step jobs some tests need to run long. Tests that are about quotas set their own limits.
    tiers = workdir / "tiers.toml"
    tiers.write_text('[new_tenants]\ndiscord = "priority"\n')
    # olga runs Atelier: /atelier lets her above the operator's ceilings (quotas.ceilings) in any server.
    operator = emulator.users.setdefault("olga", p.user(p.mint(), "olga"))
    return atelier_env(
        {
            "ATELIER_REDIS_URL": REDIS_URL,
            "ATELIER_DATABASE_URL": await postgres_databases(DATABASE),
            "ATELIER_BLOB_URL": str(workdir / "blobs"),
            "ATELIER_DATA_DIR": str(workdir / "data"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(models_dir),
            "ATELIER_QUEUE_NAME": QUEUE,
            "ATELIER_TRAIN_QUEUE_NAME": TRAIN_QUEUE,
            "ATELIER_TIERS_FILE": str(tiers),
            # One job at a time, so a job behind another really waits in the queue (the Cancel test needs one);
            # by default a worker takes several at once to batch them.
            "ATELIER_MAX_JOBS": "1",
            "ATELIER_DEVICE": "cpu",  # the same pace on a GPU machine: the timing-based tests assume a CPU
            "ATELIER_DISCORD_TOKEN": emulator.bot_token,
            "ATELIER_DISCORD_API_BASE": emulator.api_base,
            "ATELIER_DISCORD_GATEWAY_URL": emulator.gateway_url,
            "ATELIER_DISCORD_GUILD_IDS": f"{emulator.guild_id},{emulator.other_guild_id}",
            "ATELIER_DISCORD_ADMIN_ROLE": str(emulator.admin_role_id),
            "ATELIER_DISCORD_OPERATORS": str(operator["id"]),
            "ATELIER_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "WORKDIR": str(workdir),
        }
    )


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(emulator: DiscordEmulator, services_env: dict[str, str]) -> AsyncIterator[Stack]:
    async with running_stack(emulator, services_env, REDIS_URL) as running:
        yield running


@pytest.fixture
def show_logs_on_failure(stack: Stack, request: pytest.FixtureRequest):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.logs(), file=sys.stderr)
