"""The processes under test: the real `atelier discord` bot and `atelier worker`, and reference CLI runs."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.discord.emulator import DiscordEmulator

QUEUE = f"atelier:queue:discord-test-{uuid.uuid4().hex[:8]}"  # per run: a concurrent run's worker never takes our jobs
TRAIN_QUEUE = f"{QUEUE}:train"  # LoRA training, served by the same worker (`--queues images,train`)
START_TIMEOUT_S = 180  # two processes importing torch/discord.py and migrating, on a busy 2-core machine


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    emulator: DiscordEmulator
    env: dict[str, str]
    workdir: Path
    db: asyncpg.Pool
    redis: Redis
    processes: dict[str, Process] = field(default_factory=dict)

    async def start(self, name: str, *args: str) -> Process:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "atelier",
            *args,
            env=self.env,
            cwd=self.workdir,
            stdout=handle,
            stderr=handle,
        )
        handle.close()
        process = Process(name, proc, log)
        self.processes[name] = process
        return process

    async def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.proc.returncode is None:
            process.proc.terminate()
            try:
                await asyncio.wait_for(process.proc.wait(), 15)
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes.values())

    async def start_bot(self) -> None:
        before = len([f for f in self.emulator.gateway_frames if f.get("op") == 3])
        bot = await self.start("bot", "discord")
        await self._wait(
            lambda: len([f for f in self.emulator.gateway_frames if f.get("op") == 3]) > before,
            bot,
            "the bot's ready",
        )

    async def start_worker(self) -> None:
        worker = await self.start("worker", "worker", "--queues", "images,train")

        async def beating() -> bool:
            return bool([k async for k in self.redis.scan_iter(match=f"atelier:worker:{QUEUE}:*")])

        await self._wait(beating, worker, "the worker's heartbeat")

    async def _wait(self, ready, process: Process, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            if process.proc.returncode is not None:
                raise RuntimeError(f"{process.name} exited with {process.proc.returncode}:\n{process.tail()}")
            value = ready()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}:\n{process.tail()}")

    async def idle_queue(self, within: float = 120) -> None:
        """Wait until no job is queued or running (tests that need the worker's full attention)."""
        deadline = asyncio.get_running_loop().time() + within
        while await self.redis.zcard(QUEUE):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the queue did not drain")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_stack(
    emulator: DiscordEmulator,
    env: dict[str, str],
    redis_url: str,
    *,
    then: Callable[[Stack], Awaitable[None]] | None = None,
) -> AsyncIterator[Stack]:
    """The worker, then the bot, started on `env` (its WORKDIR and database), then `then(stack)` for what else an
    area runs; every process is stopped afterwards, and their logs are printed when starting them fails."""
    url = env["ATELIER_DATABASE_URL"].replace("postgres://", "postgresql://", 1)  # asyncpg's spelling
    db = await asyncpg.create_pool(url, min_size=1, max_size=2)
    redis = Redis.from_url(redis_url)
    running = Stack(emulator, env, Path(env["WORKDIR"]), db, redis)
    try:
        # The worker first: it migrates the database, which the bot then finds done.
        await running.start_worker()
        await running.start_bot()
        if then is not None:
            await then(running)
        yield running
    except BaseException:
        print(running.logs(), file=sys.stderr)
        raise
    finally:
        for name in list(running.processes):
            await running.stop(name)
        await db.close()
        await redis.aclose()


async def run_cli_imagine(env: dict[str, str], out: Path, *args: str) -> bytes:
    """`atelier imagine … --out out` on its own queue (so it runs its own in-process worker); the PNG bytes."""
    cli_env = env | {
        "ATELIER_QUEUE_NAME": f"{QUEUE}:reference",
        "ATELIER_DATABASE_URL": f"sqlite://{out}/reference.db",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atelier",
        "imagine",
        *args,
        "--out",
        str(out),
        env=cli_env,
        cwd=out,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"atelier imagine failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    path = Path(stdout.decode().split()[-1])
    return await asyncio.to_thread(path.read_bytes)


async def run_cli(env: dict[str, str], *args: str) -> str:
    """Run `atelier ARGS…` against the same services; its stdout. Fails the test if it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atelier",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"atelier {' '.join(args)} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return stdout.decode()
