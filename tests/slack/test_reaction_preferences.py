"""A workspace's own reactions (`/atelier emoji`, stored in its preferences) replace the configured ones there;
`--reset` brings the configured one back."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    event_callback,
    imagined,
    job_row,
    post_signed_form,
    post_signed_json,
    slash_command,
)

TEAM, CHANNEL = "TEMOJI", "CEMOJI"


async def admin(http_bot: str, emulator: SlackEmulator, text: str, name: str) -> str:
    fields = slash_command(
        text, channel=CHANNEL, team=TEAM, user="UADMIN", response_url=emulator.response_url(name)
    )
    fields["command"] = "/atelier"
    assert (await post_signed_form(http_bot, fields)).status == 200
    reply = (await emulator.wait_for(lambda: emulator.responses(name), what=f"the answer to {text}"))[0]
    return reply.args["text"]


async def react(http_bot: str, reaction: str, message_ts: str, event_id: str) -> None:
    event = {
        "type": "reaction_added",
        "user": "U5",
        "reaction": reaction,
        "item_user": "UBOT",
        "item": {"type": "message", "channel": CHANNEL, "ts": message_ts},
        "event_ts": f"{time.time():.6f}",
    }
    answer = await post_signed_json(http_bot, event_callback(event, event_id=event_id, team=TEAM))
    assert answer.status == 200 and answer.seconds < 3


async def upscales_in(db: asyncpg.Connection) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
        "WHERE t.platform = 'slack' AND t.external_id = $1 AND j.kind = 'upscale'",
        TEAM,
    )


async def test_a_workspaces_chosen_reaction_replaces_the_configured_one_until_reset(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    chosen = await admin(http_bot, slack_emulator, "emoji upscale :frame_with_picture:", "emoji-set")
    assert "react with frame_with_picture to upscale" in chosen, chosen
    fields = slash_command(
        "a kite --steps 2", channel=CHANNEL, team=TEAM, response_url=slack_emulator.response_url()
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, CHANNEL)
    results_ts = story.result.result["ts"]

    reacted_at = time.monotonic()
    await react(http_bot, "mag", results_ts, "EvEMOJI1")  # the configured reaction: not in this workspace
    await react(http_bot, "frame_with_picture", results_ts, "EvEMOJI2")
    upscaled = await imagined(slack_emulator, CHANNEL, thread_ts=story.status_ts, after=reacted_at)
    assert (await job_row(db, upscaled.job_id))["kind"] == "upscale"
    await asyncio.sleep(1.0)  # time for a second job to begin, if :mag: had made one
    assert await upscales_in(db) == 1

    reset = await admin(http_bot, slack_emulator, "emoji --reset upscale", "emoji-reset")
    assert "the default to upscale" in reset, reset
    reacted_at = time.monotonic()
    await react(http_bot, "mag", results_ts, "EvEMOJI3")
    await imagined(slack_emulator, CHANNEL, thread_ts=story.status_ts, after=reacted_at)
    assert await upscales_in(db) == 2
