"""Safety per channel and the review queue on Discord (issue 17, item 2), end to end against the emulator.

`tiny-sdxl-strict` is tiny SDXL with the uniform image classifier made to flag every image: SDXL has no checker
of its own, so the flag comes from the classifier. With the server's default set to `withhold` and the test
channel's own policy `spoiler`, an image asked in the test channel is posted as a spoiler (the channel
overrides the server; it is not age-restricted, so the old default would have withheld it), and images asked
in the age-restricted channel (no policy of its own) are withheld and queued for review. An admin's
`/atelier review` lists them; Approve posts one where it was asked, Delete removes the other's blob and row,
and both decisions are in the log with the admin who made them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.discord.review import review_id
from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction, Message
from tests.discord.helpers import followups, job_id_of, wait_delivered, wait_status
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD
FLAGGED = {"prompt": "a statue --steps 2 --seed 3", "model": "tiny-sdxl-strict"}


async def admin(emulator: DiscordEmulator, options: dict, expected: str, **where: int) -> None:
    command = await emulator.slash("atelier", options, subcommand="safety", permissions=MANAGER, **where)
    await emulator.wait_response(command)
    await emulator.wait_until(
        lambda: expected in emulator.messages[command.original_message_id].content, 10, repr(expected)
    )


async def delivered(stack: Stack, command: Interaction) -> Message:
    await stack.emulator.wait_response(command)
    await wait_delivered(stack, job_id_of(command), within=180)
    return await wait_status(stack.emulator, command.original_message_id, "✅ Done")


def posted_in_thread(emulator: DiscordEmulator, command: Interaction) -> Message:
    job_id = job_id_of(command)
    (message,) = [
        m
        for m in emulator.messages_in(command.original_message_id)
        if f"atelier:delete:{job_id}:0" in m.custom_ids()
    ]
    return message


async def test_channel_policy_overrides_the_server_and_withheld_images_are_reviewed(
    stack: Stack, tmp_path: Path
) -> None:
    emulator = stack.emulator
    try:
        await admin(emulator, {"policy": "withhold", "server": True}, "server default is now withhold")
        await admin(emulator, {"policy": "spoiler"}, f"channel {emulator.channel_id} is now spoiler")

        spoiled = await emulator.slash("imagine", FLAGGED)
        await delivered(stack, spoiled)
        posted = posted_in_thread(emulator, spoiled)
        assert [a.filename for a in posted.attachments] == [f"SPOILER_{job_id_of(spoiled)}-0.png"]
        assert await stack.db.fetchval("SELECT flagged FROM images WHERE job_id = $1", job_id_of(spoiled))

        held = await emulator.slash(
            "imagine", {**FLAGGED, "prompt": "a statue --steps 2 --n 2"}, channel_id=emulator.nsfw_channel_id
        )
        status = await delivered(stack, held)
        assert "2 withheld" in status.content
        message = posted_in_thread(emulator, held)
        assert message.attachments == []
        assert (
            "this channel's safety policy (withhold)" in message.content
            and "/atelier review" in message.content
        )
        job_id = job_id_of(held)
        reviews = await stack.db.fetch(
            "SELECT id, image_id, blob_key FROM safety_reviews WHERE job_id = $1 AND decision = '' ORDER BY id",
            job_id,
        )
        assert len(reviews) == 2

        # Only admins see the queue.
        refused = await emulator.slash("atelier", {}, subcommand="review", user="bob")
        await emulator.wait_response(refused)
        assert "Only members" in refused.callback_data["content"]

        listing = await emulator.slash("atelier", {}, subcommand="review", permissions=MANAGER)
        await emulator.wait_response(listing)
        page = emulator.messages[listing.original_message_id]
        await emulator.wait_until(
            lambda: review_id("approve", reviews[0]["id"]) in page.custom_ids(), 10, "buttons"
        )
        assert review_id("delete", reviews[1]["id"]) in page.custom_ids()
        assert len(page.attachments) >= 2

        approve = await emulator.click(page.id, review_id("approve", reviews[0]["id"]), permissions=MANAGER)
        await emulator.wait_response(approve)
        await emulator.wait_until(lambda: followups(emulator, approve), 10, "the approval's answer")
        assert "approved and posted" in followups(emulator, approve)[0].content
        alice = emulator.users["alice"]["id"]
        shown = [
            m
            for channel in (held.original_message_id, emulator.nsfw_channel_id)
            for m in emulator.messages_in(channel)
            if f"review #{reviews[0]['id']}" in m.content
        ]
        assert len(shown) == 1 and f"<@{alice}>" in shown[0].content and len(shown[0].attachments) == 1

        delete = await emulator.click(page.id, review_id("delete", reviews[1]["id"]), permissions=MANAGER)
        await emulator.wait_response(delete)
        await emulator.wait_until(lambda: followups(emulator, delete), 10, "the deletion's answer")
        assert "image deleted" in followups(emulator, delete)[0].content
        assert (
            await stack.db.fetchval("SELECT count(*) FROM images WHERE id = $1", reviews[1]["image_id"]) == 0
        )
        blobs = Path(stack.env["ATELIER_BLOB_URL"])
        assert not (blobs / reviews[1]["blob_key"]).exists()
        assert (blobs / reviews[0]["blob_key"]).exists()

        # A second click says who decided; the log names the reviewer of each decision.
        again = await emulator.click(page.id, review_id("delete", reviews[0]["id"]), permissions=MANAGER)
        await emulator.wait_response(again)
        await emulator.wait_until(lambda: followups(emulator, again), 10, "the answer")
        assert f"already approved by {alice}" in followups(emulator, again)[0].content
        log = await stack.db.fetch(
            "SELECT decision, reviewer FROM safety_reviews WHERE job_id = $1 ORDER BY id", job_id
        )
        assert [(r["decision"], r["reviewer"]) for r in log] == [
            ("approved", str(alice)),
            ("deleted", str(alice)),
        ]
        await admin(emulator, {"review_log": True}, f"approved by {alice}")
    finally:
        await stack.db.execute("DELETE FROM channel_policies")
