"""Delivery when Discord pushes back: 429s on edits, interaction tokens that expire, uploads over the size limit."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image as PILImage

from tests.discord import payloads as p
from tests.discord.helpers import (
    assert_edits_spaced,
    job_id_of,
    results_in,
    results_of,
    wait_bot_status_edit,
    wait_delivered,
    wait_result,
    wait_status,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

EDITS = r"/messages/(@original|\d+)$"


async def test_with_every_third_edit_refused_and_a_slow_discord_the_image_arrives_and_edits_stay_spaced(
    stack: Stack,
) -> None:
    emulator = stack.emulator
    await stack.idle_queue()
    # The first edit is refused whatever the machine's speed; every third after it too. The job is the tiny
    # model's largest (about 25 s on two cores), so progress edits happen between the first and the last
    # even on a machine several times faster.
    rule = emulator.rate_limit("PATCH", EDITS, every=3, retry_after=0.3, starting_with_first=True)
    emulator.latency = 0.2  # and a slow Discord: every request takes 200 ms more
    try:
        command = await emulator.slash(
            "imagine",
            {
                "prompt": "a lighthouse at dusk --steps 50 --size 512x512 --hires 1 --count 4 --seed 11",
                "model": "tiny",
            },
        )
        await emulator.wait_response(command)
        status_id = command.original_message_id
        result = await wait_result(emulator, status_id)
        status = await wait_status(emulator, status_id, "✅ Done")
    finally:
        emulator.rate_limits.remove(rule)
        emulator.latency = 0.0

    edits = emulator.requests_for(status_id, "PATCH")
    refused = [r for r in edits if r.status == 429]
    accepted = [r for r in edits if r.status == 200]
    assert rule.served >= 1 and len(refused) == rule.served, [r.status for r in edits]
    assert [r for r in accepted if "step" in r.payload["content"]]
    assert_edits_spaced(emulator)
    assert result.attachments[0].filename.endswith(".png")
    assert "✅ Done" in status.content and status.components == []


async def test_a_job_outliving_its_interaction_token_is_delivered_with_the_bot_token(stack: Stack) -> None:
    """The interaction was made 14½ minutes ago (as if the job waited in the queue): the worker must not use
    its token at all (Discord would answer 401 from minute 15), only bot-token channel endpoints."""
    emulator = stack.emulator
    await stack.idle_queue()
    command = await emulator.slash(
        "imagine",
        {"prompt": "an old clock tower --steps 8 --seed 5", "model": "tiny"},
        minted_at=time.time() - 870,
    )
    await emulator.wait_response(command)
    status_id = command.original_message_id
    await wait_bot_status_edit(emulator, command)
    emulator.expire_token(command.token)  # from now on Discord refuses it, as it would at minute 15

    result = await wait_result(emulator, status_id)
    status = await wait_status(emulator, status_id, "✅ Done")

    with_token = [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in emulator.with_token(command.token)]
    assert with_token == [
        ("POST", "callback", 200),
        ("PATCH", "@original", 200),
    ]  # the bot's defer and first edit
    worker_edits = [r for r in emulator.requests_for(status_id, "PATCH") if r.path.startswith("/channels/")]
    assert worker_edits and all(r.bot_auth and r.status == 200 for r in worker_edits)
    assert "✅ Done" in worker_edits[-1].payload["content"] and "✅ Done" in status.content
    assert result.attachments and result.channel_id == status_id  # in the job's thread
    row = await wait_delivered(stack, job_id_of(command))
    assert row["status"] == "succeeded"


async def test_a_token_that_dies_early_is_tried_once_then_the_bot_token_takes_over(stack: Stack) -> None:
    emulator = stack.emulator
    await stack.idle_queue()
    command = await emulator.slash("imagine", {"prompt": "a paper boat --steps 20 --seed 9", "model": "tiny"})
    await emulator.wait_response(command)
    status_id = command.original_message_id
    await wait_bot_status_edit(emulator, command)
    emulator.expire_token(command.token)

    await wait_result(emulator, status_id)
    status = await wait_status(emulator, status_id, "✅ Done")

    refused = [r for r in emulator.with_token(command.token) if r.status == 401]
    assert len(refused) == 1, "a dead token must not be retried (invalid requests lead to a ban)"
    after = [r for r in emulator.requests_for(status_id, "PATCH") if r.at > refused[0].at]
    assert after and all(r.path.startswith("/channels/") and r.status == 200 for r in after)
    assert "✅ Done" in status.content
    assert_edits_spaced(emulator)


async def test_an_image_over_the_attachment_limit_is_re_encoded_not_dropped(stack: Stack) -> None:
    emulator = stack.emulator
    limit = 3000
    command = await emulator.slash(
        "imagine", {"prompt": "static noise --steps 2 --seed 1", "model": "tiny"}, attachment_size_limit=limit
    )
    await emulator.wait_response(command)
    result = await wait_result(emulator, command.original_message_id)

    stored = await stack.db.fetchrow("SELECT size_bytes FROM images WHERE job_id = $1", job_id_of(command))
    assert stored["size_bytes"] > limit  # the PNG itself would have been refused
    (attachment,) = result.attachments
    assert attachment.filename.endswith(".webp") and len(attachment.data) <= limit
    with PILImage.open(io.BytesIO(attachment.data)) as image:
        assert image.format == "WEBP" and min(image.size) >= 16


async def test_where_no_thread_may_be_started_results_come_next_to_the_status_message(stack: Stack) -> None:
    emulator = stack.emulator
    without_threads = p.BOT_PERMISSIONS & ~p.CREATE_PUBLIC_THREADS
    command = await emulator.slash(
        "imagine", {"prompt": "a quiet harbour --steps 2", "model": "tiny"}, app_permissions=without_threads
    )
    await emulator.wait_response(command)
    status_id = command.original_message_id
    status = await wait_status(emulator, status_id, "✅ Done")

    assert status_id not in emulator.channels  # no thread was started
    assert "below" in status.content
    (result,) = results_in(emulator, emulator.channel_id)[-1:]
    assert result.webhook_id is not None  # a followup through the (young) interaction token
    assert any(f":{job_id_of(command)}:" in c for c in result.custom_ids())


async def test_a_result_post_that_fails_is_tried_again_and_the_images_appear_once(stack: Stack) -> None:
    emulator = stack.emulator
    await stack.idle_queue()
    # The first post of the result gets a 500 after Discord made the message (the worker cannot know it is
    # there); the second a 502 with nothing made. The third goes through: its nonce finds the first message,
    # so the thread shows the images once.
    made_anyway = emulator.fail("POST", r"^/channels/\d+/messages$", status=500, after_effect=True)
    refused = emulator.fail("POST", r"^/channels/\d+/messages$", status=502)
    command = await emulator.slash("imagine", {"prompt": "a lantern --steps 2 --seed 5", "model": "tiny"})
    await emulator.wait_response(command)
    status_id = command.original_message_id
    job_id = job_id_of(command)
    await wait_status(emulator, status_id, "✅ Done")
    await wait_delivered(stack, job_id)
    assert (made_anyway.served, refused.served) == (1, 1)
    posts = [
        r for r in emulator.requests if r.method == "POST" and r.path == f"/channels/{status_id}/messages"
    ]
    assert [r.status for r in posts] == [500, 502, 200]
    assert len({r.payload["nonce"] for r in posts}) == 1  # every try is the same part
    assert len(results_of(emulator, status_id, job_id)) == 1
