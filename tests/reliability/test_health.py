"""`/healthz` and `/metrics` on both bots: 200 while the platform, Redis and the database answer, 503 while Redis
is down, 200 again once it is back (the bot reconnects by itself). The bots are the real `atelier discord` and
`atelier slack` processes, against the emulators and a Redis server of the test's own that it can stop."""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.discord.emulator import DiscordEmulator
from tests.slack.emulator import SlackEmulator
from tests.support import RedisServer, atelier_env, free_port

START_S = 180


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening (yet)


async def wait_status(url: str, status: int, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + START_S
    while (seen := await asyncio.to_thread(get, url)) != status:
        assert asyncio.get_running_loop().time() < deadline, f"{what}: {url} answered {seen}, not {status}"
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def bot_env(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[dict[str, str]]:
    yield atelier_env(
        {
            "ATELIER_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_METRICS_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )


async def check_health_follows_redis(
    command: str, env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{env['ATELIER_METRICS_PORT']}"
    log = tmp_path / f"{command}.log"
    with log.open("wb") as out:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "atelier", command, env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        await wait_status(f"{base}/healthz", 200, "connected")
        assert await asyncio.to_thread(get, f"{base}/metrics") == 200
        redis_server.stop()
        await wait_status(f"{base}/healthz", 503, "Redis down")
        redis_server.start()
        await wait_status(f"{base}/healthz", 200, "Redis back")
        assert bot.returncode is None, log.read_text()[-3000:]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
    finally:
        if bot.returncode is None:
            bot.terminate()
            await bot.wait()


async def test_the_discord_bots_healthz_follows_redis(
    bot_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    emulator = DiscordEmulator()
    await emulator.start()
    try:
        env = bot_env | {
            "ATELIER_DISCORD_TOKEN": emulator.bot_token,
            "ATELIER_DISCORD_API_BASE": emulator.api_base,
            "ATELIER_DISCORD_GATEWAY_URL": emulator.gateway_url,
            "ATELIER_DISCORD_GUILD_IDS": str(emulator.guild_id),
        }
        await check_health_follows_redis("discord", env, redis_server, tmp_path)
    finally:
        await emulator.close()


async def test_the_slack_apps_healthz_follows_redis(
    bot_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    emulator = SlackEmulator(bot_token="xoxb-health")
    await emulator.start()
    try:
        env = bot_env | {
            "ATELIER_SLACK_BOT_TOKEN": "xoxb-health",
            "ATELIER_SLACK_APP_TOKEN": "xapp-health",
            "ATELIER_SLACK_API_BASE": emulator.api_base,
        }
        await check_health_follows_redis("slack", env, redis_server, tmp_path)
    finally:
        await emulator.close()
