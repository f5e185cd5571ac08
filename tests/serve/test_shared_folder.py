"""Processes started side by side on one data folder, without ATELIER_REDIS_URL or a database URL, share its one
queue and one database safely: however they are started, an image is delivered and nothing is split or lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.discord.emulator import DiscordEmulator
from tests.discord.helpers import results_in, wait_result
from tests.serve.conftest import (
    START_S,
    Processes,
    discord_env,
    folder_env,
    folder_redis,
    live_worker_count,
    stop_embedded_redis,
    wait_for,
)
from tests.support import atelier_env, run_atelier

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("attempt", range(5))
async def test_a_bot_and_a_worker_started_at_the_same_instant_in_a_fresh_folder_deliver(
    attempt: int, processes: Processes, discord: DiscordEmulator, models_dir: Path, tmp_path: Path
) -> None:
    env = folder_env(models_dir, **discord_env(discord))
    # Both start at once on a folder with no database and no Redis yet: both migrate and both look for the
    # folder's Redis at the same instant.
    bot, worker = await asyncio.gather(
        processes.start("bot", "discord", env=env), processes.start("worker", "worker", env=env)
    )
    await wait_for(discord.bot_ready, "the bot's ready")
    await wait_for(lambda: live_worker_count(tmp_path), "the worker's heartbeat on the folder's Redis")
    command = await discord.slash("imagine", {"prompt": f"attempt {attempt} --size 64x64 --steps 4"})
    await discord.wait_response(command, within=30)
    result = await wait_result(discord, command.original_message_id, within=START_S)
    assert len(result.attachments) == 1 and result.attachments[0].data.startswith(b"\x89PNG")
    assert bot.alive() and worker.alive()
    assert "Traceback" not in bot.text() + worker.text(), processes.logs()


async def test_the_clis_own_worker_runs_only_its_job_and_leaves_chat_jobs_to_a_real_worker(
    processes: Processes, discord: DiscordEmulator, models_dir: Path, tmp_path: Path
) -> None:
    env = folder_env(models_dir, **discord_env(discord))
    await processes.start("bot", "discord", env=env)
    await wait_for(discord.bot_ready, "the bot's ready")
    command = await discord.slash("imagine", {"prompt": "waits for a worker --size 64x64 --steps 4"})
    await discord.wait_response(command, within=30)
    thread = command.original_message_id
    queue = folder_redis(tmp_path)
    try:
        await wait_for(lambda: queue.zcard("atelier:queue"), "the chat job on the queue")

        # No worker serves the folder: `atelier imagine` runs its own job in-process, and only that one. The chat
        # job needs a worker that can post to Discord (the CLI's has no Discord replier).
        cli = await asyncio.to_thread(
            run_atelier,
            "imagine",
            "y",
            "--size",
            "64x64",
            "--steps",
            "4",
            cwd=tmp_path,
            env=env,
            timeout=START_S,
        )
        assert cli.returncode == 0, cli.stderr
        assert await queue.zcard("atelier:queue") == 1  # the chat job is still queued, untouched
        assert results_in(discord, thread) == []

        await processes.start("worker", "worker", env=env)
        result = await wait_result(discord, thread, within=START_S)  # a real worker delivers it
        assert len(result.attachments) == 1
    finally:
        await queue.aclose()


async def test_two_migrations_started_together_both_succeed_20_times_of_20(tmp_path: Path) -> None:
    async def migrate(folder: Path) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "atelier",
            "migrate",
            cwd=folder,
            env=atelier_env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, err.decode()

    outcomes = []
    for run in range(20):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        outcomes.append(await asyncio.gather(migrate(folder), migrate(folder)))
    failures = [err for pair in outcomes for code, err in pair if code != 0]
    assert failures == [], failures[0][-2000:]
    # Exactly one of each pair applied the migrations; the other waited and found nothing pending.
    assert all(sum("no pending migrations" in err for _, err in pair) == 1 for pair in outcomes), outcomes[0]


def test_make_demo_with_a_data_dir_leaves_nothing_in_dot_data(tmp_path: Path) -> None:
    before = sorted((ROOT / "data").rglob("*")) if (ROOT / "data").exists() else None
    data = tmp_path / "x"
    env = atelier_env({"ATELIER_DATA_DIR": str(data)})
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "demo"],
        env={k: v for k, v in env.items() if not k.startswith("MAKE")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    image = ROOT / result.stdout.split()[-1]
    try:
        assert image.read_bytes().startswith(b"\x89PNG")
    finally:
        image.unlink()
    after = sorted((ROOT / "data").rglob("*")) if (ROOT / "data").exists() else None
    assert after == before  # nothing created in ./data
    assert (data / "atelier.db").exists() and list((data / "blobs").rglob("*.png"))
    assert (data / "models").is_dir() and (data / "redis" / "dump.rdb").exists()
    stop_embedded_redis(data)  # already stopped by the demo; nothing must be running
    assert not os.path.exists(data / "redis" / "redis.sock")
