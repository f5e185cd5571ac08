"""One box, one command: `atelier serve` and side-by-side `atelier` processes on one data folder, with nothing but
the embedded defaults (SQLite, local blobs, the folder's own Redis) and an emulated Discord or Slack.

Every process is the real entry point in a subprocess; its merged output goes to a log file that a failing test
prints. No ATELIER_REDIS_URL and no database URL is set anywhere here: sharing the folder is what is tested.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from redis.asyncio import Redis

from atelier.embedded_redis import socket_path_for
from tests.discord.emulator import DiscordEmulator
from tests.support import atelier_env

START_S = 240  # importing torch, diffusers and discord.py in several processes at once on two busy cores


@dataclass
class Proc:
    """A real `atelier …` subprocess; stdout and stderr go to `log`."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def wait_log(self, pattern: str, *, within: float = START_S, after: int = 0) -> re.Match:
        """The first match of `pattern` in the log at or after character `after`; fails if the process exits."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = re.compile(pattern, re.MULTILINE).search(self.text(), after)
            if found:
                return found
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {pattern!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.name}: no {pattern!r} within {within:.0f} s")
            await asyncio.sleep(0.1)

    async def stop(self, within: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise


class Processes:
    """Starts `atelier` processes in one folder and stops whatever is left (and the folder's Redis) at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Proc] = []

    async def start(self, name: str, *args: str, env: dict[str, str]) -> Proc:
        log = self.folder / f"{name}.log"
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "atelier", *args, cwd=self.folder, env=env, stdout=out, stderr=out
            )
        self.started.append(Proc(name, proc, log))
        return self.started[-1]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.text()[-6000:]}" for p in self.started)

    async def close(self) -> None:
        for process in reversed(self.started):
            if process.alive():
                process.proc.kill()
                await process.proc.wait()
        stop_embedded_redis(self.folder / "data")


def stop_embedded_redis(data_dir: Path) -> None:
    """Shut down the folder's embedded Redis if a killed process left it running (a test must leave none)."""
    client = redis.Redis(unix_socket_path=str(socket_path_for((data_dir / "redis").resolve())))
    try:
        client.shutdown(nosave=True)
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()


def folder_env(models_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process in a fresh folder: embedded defaults, tiny models, one torch thread (so a
    worker does not starve the bot beside it on two cores)."""
    env = {k: v for k, v in atelier_env().items() if not k.startswith("SLACK_")}
    return {
        **env,
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),  # tiny models are built once per session
        "ATELIER_DEVICE": "cpu",
        "ATELIER_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def discord_env(emulator: DiscordEmulator) -> dict[str, str]:
    return {
        "ATELIER_DISCORD_TOKEN": emulator.bot_token,
        "ATELIER_DISCORD_API_BASE": emulator.api_base,
        "ATELIER_DISCORD_GATEWAY_URL": emulator.gateway_url,
        "ATELIER_DISCORD_GUILD_IDS": str(emulator.guild_id),
    }


def folder_redis(folder: Path) -> Redis:
    """A client of the folder's embedded Redis, to look at the queue the processes share."""
    return Redis(unix_socket_path=str(socket_path_for((folder / "data" / "redis").resolve())))


async def wait_for(probe: Callable, what: str, within: float = START_S):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def live_worker_count(folder: Path) -> int:
    client = folder_redis(folder)
    try:
        return len([k async for k in client.scan_iter(match="atelier:worker:*")])
    except (redis.RedisError, OSError):
        return 0
    finally:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def discord() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest_asyncio.fixture(loop_scope="session")
async def processes(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(running.logs(), file=sys.stderr)
        await running.close()
