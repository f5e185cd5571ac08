"""The editing loop in Slack, against the emulator with the real bolt app (HTTP mode), worker, Redis, PostgreSQL
and tiny models: :mag: on the image message of a result and on a member's uploaded image each post one upscale;
the editing loop's buttons under a single image; `atelier slack --help`."""

from __future__ import annotations

import time

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    delivered_row,
    event_callback,
    imagined,
    png_size,
    post_signed_form,
    post_signed_json,
    slash_command,
)
from tests.support import run_atelier

TEAM, CHANNEL = "TLOOP", "CLOOP"


async def react(http_bot: str, message: dict, event_id: str, *, item_user: str) -> None:
    event = {
        "type": "reaction_added",
        "user": "U7",
        "reaction": "mag",
        "item_user": item_user,
        "item": {"type": "message", "channel": CHANNEL, "ts": message["ts"]},
        "event_ts": f"{time.time():.6f}",
    }
    answer = await post_signed_json(http_bot, event_callback(event, event_id=event_id, team=TEAM))
    assert answer.status == 200 and answer.seconds < 3


async def upscales(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT j.id, j.spec FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
        "WHERE t.platform = 'slack' AND t.external_id = $1 AND j.kind = 'upscale' ORDER BY j.created_at",
        TEAM,
    )


async def test_mag_on_a_result_image_and_on_a_members_upload_each_post_one_upscale(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    fields = slash_command(
        "a lighthouse --steps 2 --seed 3",
        channel=CHANNEL,
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, CHANNEL)
    image_messages = [
        m
        for (channel, _), m in slack_emulator.messages.items()
        if channel == CHANNEL and m.get("files") and m.get("thread_ts") == story.status_ts
    ]
    assert len(image_messages) == 1  # the file share of the result's one image

    reacted_at = time.monotonic()
    await react(http_bot, image_messages[0], "EvLOOP1", item_user=slack_emulator.bot_user_id)
    upscaled = await imagined(slack_emulator, CHANNEL, thread_ts=story.status_ts, after=reacted_at)
    assert (await delivered_row(db, upscaled.job_id))["kind"] == "upscale"
    assert png_size(upscaled.files[0]) == (256, 256)  # the 64² result, 4× larger
    [first] = await upscales(db)
    assert first["id"] == upscaled.job_id

    member = slack_emulator.post_message(
        CHANNEL, "U7", [slack_emulator.add_file(a_png(64, 80), "cat.png", "image/png")]
    )
    reacted_at = time.monotonic()
    await react(http_bot, member, "EvLOOP2", item_user="U7")
    theirs = await imagined(slack_emulator, CHANNEL, thread_ts=member["ts"], after=reacted_at)
    assert (await delivered_row(db, theirs.job_id))["kind"] == "upscale"
    assert png_size(theirs.files[0]) == (256, 320)
    assert [row["id"] for row in await upscales(db)] == [upscaled.job_id, theirs.job_id]  # one each
    assert slack_emulator.downloads(member["files"][0]["id"])  # read through the Web API's file URL


def test_atelier_slack_help_prints_the_set_up_steps(tmp_path) -> None:
    result = run_atelier("slack", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for step in ("slack-manifest.yml", "Socket Mode", "ATELIER_SLACK_BOT_TOKEN", "/invite"):
        assert step in result.stdout, step
