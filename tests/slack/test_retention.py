"""Slack's buttons under an image that retention deleted answer in words that it expired (the real bolt app in
HTTP mode, the real worker running its retention job, PostgreSQL; time is not waited for: the job is backdated)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from arq.connections import RedisSettings, create_pool

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    TEAM,
    block_action,
    imagined,
    post_signed_form,
    slash_command,
)
from tests.support import run_atelier

CHANNEL = "CRETENTION"
EXPIRED = "This image has expired (kept 2 days on this server)."


async def test_buttons_under_an_expired_image_say_it_expired(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, slack_env: dict[str, str], tmp_path
) -> None:
    fields = slash_command(
        "a windmill --steps 2 --seed 11", channel=CHANNEL, response_url=slack_emulator.response_url()
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, CHANNEL)
    [blob_key] = [
        r["blob_key"] for r in await db.fetch("SELECT blob_key FROM images WHERE job_id = $1", story.job_id)
    ]

    blob = Path(slack_env["ATELIER_BLOB_URL"]) / blob_key  # the rig's blob folder
    assert blob.is_file()
    tenant = f"slack:{TEAM}"
    setting = run_atelier("admin", "retention", tenant, "--images", "2", cwd=tmp_path, env=slack_env)
    assert setting.returncode == 0, setting.stderr
    try:
        # Only this job is older than 2 days: the other tests' jobs of this workspace were made minutes ago.
        await db.execute(
            "UPDATE jobs SET created_at = $2 WHERE id = $1",
            story.job_id,
            datetime.now(UTC) - timedelta(days=2, hours=3),
        )
        redis = await create_pool(RedisSettings.from_dsn(slack_env["ATELIER_REDIS_URL"]))
        try:
            run = await redis.enqueue_job("retention", _queue_name="atelier:queue")
            swept = await run.result(timeout=120, poll_delay=0.05)
        finally:
            await redis.aclose()
        assert swept["images"] >= 1
        assert not await db.fetchval("SELECT count(*) FROM images WHERE job_id = $1", story.job_id)
        assert not blob.exists()

        message_ts = story.result.result["ts"]
        for action in ("upscale_subtle", "vary_strong", "pan_left"):
            name = f"retention-{action}"
            payload = block_action(
                f"{action}:{story.job_id}:0",
                channel=CHANNEL,
                message_ts=message_ts,
                response_url=slack_emulator.response_url(name),
            )
            answer = await post_signed_form(http_bot, {"payload": json.dumps(payload)})
            assert answer.status == 200 and answer.seconds < 3
            said = await slack_emulator.wait_for(
                lambda n=name: slack_emulator.responses(n), what=f"{action}'s answer"
            )
            assert EXPIRED in said[0].args.get("text", ""), said[0].args
    finally:
        cleared = run_atelier("admin", "retention", tenant, "--clear", "images", cwd=tmp_path, env=slack_env)
        assert cleared.returncode == 0, cleared.stderr
