"""The safety filter (issue 5, build item 7): with `tiny-strict`, whose checker flags every image, a server with
safety on gets a spoiler in an age-restricted channel and a withheld image elsewhere; with safety off, the
image as usual."""

from __future__ import annotations

import pytest

from bots.discord.components import loop_id, result_id
from jobs.queue import job_id_for
from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction, Message
from tests.discord.helpers import (
    image_sha256s,
    job_id_of,
    pixels_sha256,
    results_of,
    wait_delivered,
    wait_status,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD
FLAGGED = {"prompt": "a statue --steps 2 --seed 3", "model": "tiny-strict"}


async def result_message(stack: Stack, command: Interaction) -> Message:
    """The job's result message in its thread, once the worker recorded the delivery."""
    emulator = stack.emulator
    await emulator.wait_response(command)
    job_id = job_id_of(command)
    await wait_delivered(stack, job_id, within=180)
    thread_id = command.original_message_id
    (message,) = [
        m for m in emulator.messages_in(thread_id) if f"atelier:delete:{job_id}:0" in m.custom_ids()
    ]
    return message


async def set_safety(emulator: DiscordEmulator, state: str) -> None:
    command = await emulator.slash("atelier", {"state": state}, subcommand="safety", permissions=MANAGER)
    await emulator.wait_response(command)
    expected = "safety filter on" if state == "on" else "safety filter off"
    await emulator.wait_until(
        lambda: expected in emulator.messages[command.original_message_id].content, 10, "the answer"
    )


async def test_a_flagged_image_is_a_spoiler_in_an_age_restricted_channel_and_withheld_elsewhere(
    stack: Stack,
) -> None:
    emulator = stack.emulator
    adult = await emulator.slash("imagine", FLAGGED, channel_id=emulator.nsfw_channel_id)
    posted = await result_message(stack, adult)
    job_id = job_id_of(adult)
    assert [a.filename for a in posted.attachments] == [f"SPOILER_{job_id}-0.png"]
    assert await image_sha256s(stack, job_id) == [pixels_sha256(posted.attachments[0].data)]
    assert await stack.db.fetchval("SELECT flagged FROM images WHERE job_id = $1", job_id) is True
    assert "withheld" not in posted.content
    # An upscale of it (Upscale (Subtle), in its thread) is as flagged as its source: a spoiler too.
    click = await emulator.click(posted.id, loop_id("upscale_subtle", job_id, 0))
    await emulator.wait_response(click)
    await wait_delivered(stack, job_id_of(click), within=180)
    (upscaled,) = results_of(emulator, adult.original_message_id, job_id_of(click))
    assert [a.filename for a in upscaled.attachments] == [f"SPOILER_{job_id_of(click)}-0.png"]
    # So is one started by 🔍 on the spoiler: the upload has the flagged image's very pixels.
    await emulator.react(posted.id, "🔍", user="bob")
    bob = emulator.users["bob"]["id"]
    reacted = job_id_for(f"discord:reaction:{posted.channel_id}:{posted.id}:{bob}:🔍")
    await wait_delivered(stack, reacted, within=180)
    (reply,) = results_of(emulator, posted.channel_id, reacted)
    assert [a.filename for a in reply.attachments] == [f"SPOILER_{reacted}-0.png"]

    general = await emulator.slash("imagine", FLAGGED)
    held = await result_message(stack, general)
    assert held.attachments == []
    assert "1 image withheld: the safety classifier flagged it" in held.content
    assert "safety policy (age-restricted)" in held.content and "/atelier review" in held.content
    # No button could bring the withheld image out: only reroll and delete.
    job_id = job_id_of(general)
    assert held.custom_ids() == [result_id("reroll", job_id, 0), result_id("delete", job_id, 0)]
    status = await wait_status(emulator, general.original_message_id, "✅ Done")
    assert "1 withheld by the safety filter" in status.content


async def test_with_safety_off_a_flagged_image_is_posted_as_usual(stack: Stack) -> None:
    emulator = stack.emulator
    refused = await emulator.slash("atelier", {"state": "off"}, subcommand="safety", user="bob")
    await emulator.wait_response(refused)
    assert refused.callback_type == 4 and "Only members" in refused.callback_data["content"]

    await set_safety(emulator, "off")
    try:
        command = await emulator.slash("imagine", FLAGGED)
        posted = await result_message(stack, command)
    finally:
        await set_safety(emulator, "on")
    job_id = job_id_of(command)
    assert [a.filename for a in posted.attachments] == [f"{job_id}-0.png"]
    assert "withheld" not in posted.content
    assert loop_id("upscale_subtle", job_id, 0) in posted.custom_ids()
