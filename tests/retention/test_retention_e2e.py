"""An image past its server's retention: the worker's retention job deletes its blob and its rows, and afterwards
its buttons in Discord and the HTTP API say it expired, in words, instead of failing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from arq.connections import RedisSettings, create_pool

from storage.blobs import BlobStore
from tests.discord.emulator import DiscordEmulator, Interaction
from tests.discord.helpers import followups, job_id_of, wait_delivered, wait_result
from tests.discord.stack import QUEUE, Stack, run_cli
from tests.retention.conftest import REDIS_URL, api_url

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

EXPIRED = "This image has expired (kept 30 days on this server)."


async def run_retention(stack: Stack) -> dict:
    """The worker's retention job, enqueued by name as its hourly cron enqueues it; its result."""
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    try:
        job = await redis.enqueue_job("retention", _queue_name=QUEUE)
        assert job is not None
        return await job.result(timeout=120, poll_delay=0.05)
    finally:
        await redis.aclose()


async def backdate(stack: Stack, job_id: str, age: timedelta) -> None:
    await stack.db.execute("UPDATE jobs SET created_at = $2 WHERE id = $1", job_id, datetime.now(UTC) - age)


async def answer_to(emulator: DiscordEmulator, click: Interaction) -> str:
    """The ephemeral words a click got: its response (a refusal at once), or a followup (after a deferral)."""
    await emulator.wait_response(click)
    if click.callback_type == 4:
        assert click.callback_data["flags"] & 64, "the answer is for the clicker alone"
        return click.callback_data["content"]
    found = await emulator.wait_until(
        lambda: [m for m in followups(emulator, click) if m.content], 20, "an answer to the click"
    )
    assert found[0].flags & 64, "the answer is for the clicker alone"
    return found[0].content


async def test_an_image_past_retention_is_deleted_and_its_buttons_say_expired(
    stack: Stack, blobs: BlobStore
) -> None:
    emulator = stack.emulator
    guild = f"discord:{emulator.guild_id}"
    # The operator keeps this server's images 30 days (the default would keep them 90).
    shown = await run_cli(stack.env, "admin", "retention", guild, "--images", "30")
    assert "images 30 days, inputs 7 days, training 30 days" in shown
    key = (await run_cli(stack.env, "admin", "apikey", "create", guild, "--name", "retention")).split()[-1]
    headers = {"Authorization": f"Bearer {key}"}

    command = await emulator.slash(
        "imagine", {"prompt": "a lighthouse at dusk --steps 2 --seed 5", "model": "tiny"}
    )
    await emulator.wait_response(command)
    result = await wait_result(emulator, command.original_message_id)
    job_id = job_id_of(command)
    await wait_delivered(stack, job_id)
    images = await stack.db.fetch("SELECT id, blob_key FROM images WHERE job_id = $1", job_id)
    assert len(images) == 1
    image_id, blob_key = images[0]["id"], images[0]["blob_key"]
    assert await blobs.exists(blob_key)

    # 29 days old: inside the server's 30, so the job deletes nothing of it.
    await backdate(stack, job_id, timedelta(days=29))
    await run_retention(stack)
    assert await blobs.exists(blob_key)
    assert await stack.db.fetchval("SELECT count(*) FROM images WHERE job_id = $1", job_id) == 1

    # 30 days and an hour old: past it. The blob and the row go; the job's record stays, marked.
    await backdate(stack, job_id, timedelta(days=30, hours=1))
    swept = await run_retention(stack)
    assert swept["images"] >= 1
    assert not await blobs.exists(blob_key)
    assert await stack.db.fetchval("SELECT count(*) FROM images WHERE job_id = $1", job_id) == 0
    assert await stack.db.fetchval("SELECT images_expired_at FROM jobs WHERE id = $1", job_id) is not None
    again = await run_retention(stack)  # a second run (or a second worker) finds nothing left to do
    assert again["images"] == 0

    # The buttons on the old message answer in words: upscale, vary, faces, pan, and Custom Zoom (which would
    # open a modal first).
    jobs_before = await stack.db.fetchval("SELECT count(*) FROM jobs")
    for action in ("upscale_subtle", "vary_strong", "faces", "pan_left", "zoom_custom"):
        click = await emulator.click(result.id, f"atelier:{action}:{job_id}:0")
        assert EXPIRED in await answer_to(emulator, click), action
    assert await stack.db.fetchval("SELECT count(*) FROM jobs") == jobs_before  # nothing was queued

    # The HTTP API: the job says why its images are gone; the image itself is no more.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api_url(stack.env)}/v1/jobs/{job_id}", headers=headers) as answer:
            assert answer.status == 200
            view = await answer.json()
        assert view["images"] == [] and view["images_expired"] == EXPIRED
        async with http.get(f"{api_url(stack.env)}/v1/images/{image_id}", headers=headers) as answer:
            assert answer.status == 404
