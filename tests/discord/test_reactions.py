"""Reactions: 🔍 on a member's uploaded image posts its 4× upscale as a reply to that message, ✨ its face restored;
a server's own emoji (`/atelier emoji`) replaces the default."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from jobs.queue import job_id_for
from tests.discord import payloads as p
from tests.discord.emulator import Message, Upload
from tests.discord.helpers import astronaut_png, job_row, noise_png, pixels, size_of, wait_delivered
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


def replies_to(stack: Stack, message: Message) -> list[Message]:
    return [
        m
        for m in stack.emulator.messages_in(message.channel_id)
        if str((m.reference or {}).get("message_id")) == str(message.id)
    ]


async def test_magnifier_on_a_members_image_replies_with_its_upscale(stack: Stack) -> None:
    emulator = stack.emulator
    posted = emulator.post("bob", "my cat", [Upload("cat.png", noise_png(80, 64))])
    await emulator.react(posted.id, "🔍", user="alice")

    job_id = job_id_for(
        f"discord:reaction:{posted.channel_id}:{posted.id}:{emulator.users['alice']['id']}:🔍"
    )
    row = await wait_delivered(stack, job_id, within=180)
    assert row["kind"] == "upscale" and row["status"] == "succeeded"
    replies = replies_to(stack, posted)
    results = [m for m in replies if m.attachments]
    assert len(results) == 1
    assert size_of(results[0].attachments[0].data) == (320, 256)  # 80×64 made 4× larger
    assert f"<@{emulator.users['alice']['id']}>" in results[0].content
    (status,) = [m for m in replies if not m.attachments]
    assert "Done" in status.content and status.components == []

    # Too small to upscale: a reply says why, and nothing is enqueued.
    tiny = emulator.post("bob", "a thumbnail", [Upload("thumb.png", noise_png(48, 32))])
    await emulator.react(tiny.id, "🔍", user="alice")
    said = await emulator.wait_until(lambda: replies_to(stack, tiny), 15, "the reply to the thumbnail")
    assert "below the minimum of 64" in said[0].content

    # The same reaction again makes no second job; a reaction on a message without an image does nothing.
    await emulator.react(posted.id, "🔍", user="alice")
    text_only = emulator.post("bob", "no picture here")
    await emulator.react(text_only.id, "🔍", user="alice")
    await asyncio.sleep(1.5)
    assert len(replies_to(stack, posted)) == 2 and not replies_to(stack, text_only)
    other = job_id_for(
        f"discord:reaction:{text_only.channel_id}:{text_only.id}:{emulator.users['alice']['id']}:🔍"
    )
    assert await job_row(stack, other) is None


async def test_a_reaction_on_a_file_that_is_not_an_image_is_ignored(stack: Stack) -> None:
    emulator = stack.emulator
    posted = emulator.post("bob", "notes", [Upload("notes.txt", b"hello", "text/plain")])
    await emulator.react(posted.id, "🔍", user="alice")
    await asyncio.sleep(1.0)
    assert not replies_to(stack, posted)


async def test_a_servers_own_upscale_emoji_upscales_and_the_default_then_does_not(stack: Stack) -> None:
    emulator = stack.emulator
    admin = {"permissions": p.MEMBER_PERMISSIONS | p.MANAGE_GUILD}
    member = await emulator.slash(
        "atelier", {"reaction": "upscale", "emoji": "🎨"}, subcommand="emoji", user="bob"
    )
    await emulator.wait_response(member)
    assert (
        member.callback_type == 4 and "Only members with the Manage Server" in member.callback_data["content"]
    )

    chosen = await emulator.slash(
        "atelier", {"reaction": "upscale", "emoji": "🎨"}, subcommand="emoji", **admin
    )
    await emulator.wait_response(chosen)
    await emulator.wait_until(
        lambda: "🎨" in emulator.messages[chosen.original_message_id].content, 10, "the answer"
    )
    try:
        posted = emulator.post("bob", "my dog", [Upload("dog.png", noise_png(72, 64))])
        await emulator.react(posted.id, "🔍", user="alice")  # no longer this server's upscale emoji
        await emulator.react(posted.id, "🎨", user="alice")
        alice = emulator.users["alice"]["id"]
        job_id = job_id_for(f"discord:reaction:{posted.channel_id}:{posted.id}:{alice}:🎨")
        row = await wait_delivered(stack, job_id, within=180)
        assert row["kind"] == "upscale" and row["status"] == "succeeded"
        results = [m for m in replies_to(stack, posted) if m.attachments]
        assert len(results) == 1 and size_of(results[0].attachments[0].data) == (288, 256)
        assert (
            await job_row(stack, job_id_for(f"discord:reaction:{posted.channel_id}:{posted.id}:{alice}:🔍"))
            is None
        )
    finally:
        reset = await emulator.slash(
            "atelier", {"reaction": "upscale", "reset": True}, subcommand="emoji", **admin
        )
        await emulator.wait_response(reset)
        await emulator.wait_until(
            lambda: (
                "🎨" not in emulator.messages[reset.original_message_id].content
                and "upscale" in emulator.messages[reset.original_message_id].content
            ),
            10,
            "the reset's answer",
        )


async def test_sparkles_on_a_members_portrait_replies_with_its_face_restored(stack: Stack) -> None:
    emulator = stack.emulator
    portrait = astronaut_png(128)
    posted = emulator.post("bob", "me at work", [Upload("me.png", portrait)])
    await emulator.react(posted.id, "✨", user="alice")
    alice = emulator.users["alice"]["id"]
    job_id = job_id_for(f"discord:reaction:{posted.channel_id}:{posted.id}:{alice}:✨")
    row = await wait_delivered(stack, job_id, within=240)
    assert row["kind"] == "enhance" and row["status"] == "succeeded"
    (result,) = [m for m in replies_to(stack, posted) if m.attachments]
    restored, original = pixels(result.attachments[0].data), pixels(portrait)
    assert restored.shape == original.shape  # faces only: no upscale
    face = (slice(16, 42), slice(43, 69))  # where OpenCV finds her face at 128 px (see tests/enhance)
    assert (restored[face] != original[face]).any(axis=2).mean() > 0.9
    assert np.array_equal(restored[100:, 100:], original[100:, 100:])  # far from the face: untouched
