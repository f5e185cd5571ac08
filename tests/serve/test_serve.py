"""`atelier serve` in a fresh folder, as a self-hoster runs it: one command, the embedded defaults, a chat."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

from PIL import Image as PILImage

from atelier.embedded_redis import socket_path_for
from tests.discord.emulator import DiscordEmulator
from tests.discord.helpers import wait_result
from tests.serve.conftest import (
    START_S,
    Processes,
    discord_env,
    folder_env,
    live_worker_count,
    wait_for,
)
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import imagined, png_size, slash_command
from tests.support import run_atelier


async def imagine_in_discord(emulator: DiscordEmulator, prompt: str) -> list[bytes]:
    """`/imagine prompt` in the test channel; the PNGs posted in the job's thread."""
    command = await emulator.slash("imagine", {"prompt": prompt, "model": "tiny"})
    await emulator.wait_response(command, within=30)
    assert command.callback_type == 5, command.callback_data  # deferred
    result = await wait_result(emulator, command.original_message_id, within=START_S)
    return [a.data for a in result.attachments]


async def test_serve_runs_the_bot_and_a_worker_on_one_queue_shared_with_the_cli_and_restarts_a_killed_worker(
    processes: Processes, discord: DiscordEmulator, models_dir: Path, tmp_path: Path
) -> None:
    env = folder_env(models_dir, **discord_env(discord))
    serve = await processes.start("serve", "serve", "--grace", "20", env=env)
    await serve.wait_log(r"^serve\s*\| worker-1 started \(pid (\d+)\)")
    await wait_for(discord.bot_ready, "the bot's ready")
    await wait_for(lambda: live_worker_count(tmp_path), "serve's worker")

    pngs = await imagine_in_discord(discord, "a red fox --size 64x64 --steps 4 --seed 1")
    assert len(pngs) == 1 and PILImage.open(io.BytesIO(pngs[0])).size == (64, 64)

    # Beside it, in the same folder and with no Redis URL either: the CLI joins the same queue, and serve's
    # worker (not one of the CLI's own) makes its image.
    cli = await asyncio.to_thread(
        run_atelier, "imagine", "x", "--size", "64x64", "--steps", "4", cwd=tmp_path, env=env, timeout=START_S
    )
    assert cli.returncode == 0, cli.stderr
    image = tmp_path / cli.stdout.split()[-1]
    job_id = image.name.split("-")[0]
    assert PILImage.open(image).size == (64, 64)
    await serve.wait_log(rf"^worker-1\s*\|.*{job_id}:imagine", within=30)

    # SIGKILL serve's worker, as the OOM killer would: it is restarted, and the next job is delivered.
    pid = int((await serve.wait_log(r"^serve\s*\| worker-1 started \(pid (\d+)\)")).group(1))
    os.kill(pid, signal.SIGKILL)
    restarted = await serve.wait_log(r"^serve\s*\| worker-1 exited \(killed by SIGKILL\); restarting in 1 s$")
    new_pid = int(
        (await serve.wait_log(r"^serve\s*\| worker-1 started \(pid (\d+)\)", after=restarted.end())).group(1)
    )
    assert new_pid != pid
    assert await imagine_in_discord(discord, "a blue fox --size 64x64 --steps 4 --seed 2")

    # SIGTERM: the bot stops first, then the worker; exit status 0; the folder's Redis is gone with its last user.
    assert await serve.stop() == 0, serve.text()[-3000:]
    log = serve.text()
    assert log.index("discord stopped (exit status 0)") < log.index("worker-1 stopped (exit status 0)"), log[
        -3000:
    ]
    assert not socket_path_for((tmp_path / "data" / "redis").resolve()).exists()


async def test_serve_runs_the_slack_app_in_socket_mode_and_delivers(
    processes: Processes, models_dir: Path, tmp_path: Path
) -> None:
    slack = SlackEmulator(bot_token="xoxb-serve-test")
    await slack.start()
    try:
        env = folder_env(
            models_dir,
            ATELIER_SLACK_BOT_TOKEN="xoxb-serve-test",
            ATELIER_SLACK_APP_TOKEN="xapp-serve-test",
            ATELIER_SLACK_API_BASE=slack.api_base,
        )
        serve = await processes.start("serve", "serve", env=env)
        await slack.wait_socket_connected(within_s=START_S)
        await wait_for(lambda: live_worker_count(tmp_path), "serve's worker")
        fields = slash_command(
            "a paper crane --size 64x64 --steps 4", channel="CSERVE", response_url=slack.response_url()
        )
        await slack.send_envelope("slash_commands", fields)
        story = await imagined(slack, "CSERVE", within_s=START_S)
        assert [png_size(f) for f in story.files] == [(64, 64)]
        assert await serve.stop() == 0
        assert "xoxb-serve-test" not in serve.text() and "xapp-serve-test" not in serve.text()
    finally:
        await slack.close()


def test_serve_without_a_platform_token_says_which_variables_to_set(tmp_path: Path) -> None:
    result = run_atelier("serve", cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"}, timeout=120)
    assert result.returncode == 2, result.stderr
    for variable in ("ATELIER_DISCORD_TOKEN", "ATELIER_SLACK_BOT_TOKEN", "ATELIER_SLACK_APP_TOKEN"):
        assert variable in result.stderr
    assert len(result.stderr.splitlines()) <= 24  # one screen
    assert not (tmp_path / "data").exists()  # nothing was started or created
