"""Discord: a button acts only on a job of the server it is clicked in (issue 11, item 3).

A member of another server clicking U, V, F, Reroll, Delete or Cancel with a custom id naming a job of this one
(copied onto a message there) gets an ephemeral "That button belongs to another server" as the interaction's
first response, and nothing else happens: no job row, nothing queued, nothing posted, edited or deleted in the
job's channel or thread. A button naming an image the safety filter withheld is refused too. The real `atelier
discord` bot and worker against the Discord emulator.
"""

from __future__ import annotations

import pytest

from bots.discord.components import cancel_components, result_components, result_id
from tests.discord.emulator import DiscordEmulator, Message
from tests.discord.helpers import followups, job_id_of, wait_delivered, wait_result
from tests.discord.stack import QUEUE, Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

EPHEMERAL = 64


async def _queue_state(stack: Stack) -> tuple[set[str], int, set[bytes]]:
    """Every job row's id, the queue's length and its jobs' arq keys."""
    ids = {row["id"] for row in await stack.db.fetch("SELECT id FROM jobs")}
    keys = {key async for key in stack.redis.scan_iter(match="arq:job:*")}
    return ids, await stack.redis.zcard(QUEUE), keys


def _visible(emulator: DiscordEmulator, *channel_ids: int) -> dict[int, tuple[str, int, bool]]:
    """Every message in the channels, with its content, edit count and whether it was deleted."""
    return {
        m.id: (m.content, len(m.edits), m.deleted)
        for m in emulator.messages.values()
        if m.channel_id in channel_ids
    }


def _copy_of(emulator: DiscordEmulator, components: list, channel_id: int, user: str) -> Message:
    """A message in `channel_id` carrying `components`: what a click with made-up custom ids comes from."""
    message = emulator.post(user, "copied buttons", channel_id=channel_id)
    message.components = components
    return message


async def test_buttons_naming_a_job_of_another_server_are_refused_and_nothing_is_posted(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "imagine", {"prompt": "a quiet harbour --steps 2 --seed 8", "model": "tiny"}
    )
    await emulator.wait_response(command)
    thread_id, job_id = command.original_message_id, job_id_of(command)
    result = await wait_result(emulator, thread_id)
    await wait_delivered(stack, job_id, within=180)
    copied = _copy_of(
        emulator,
        result.components + cancel_components(job_id),
        emulator.other_channel_id,
        "bob",
    )
    before = await _queue_state(stack)
    seen = _visible(emulator, emulator.channel_id, thread_id)

    for custom_id in copied.custom_ids():
        click = await emulator.click(copied.id, custom_id, user="bob")
        await emulator.wait_response(click)
        assert click.callback_type == 4, (custom_id, click.callback_type)  # answered, not deferred
        data = click.callback_data or {}
        assert int(data.get("flags", 0)) & EPHEMERAL, custom_id
        assert "That button belongs to another server" in data.get("content", ""), (custom_id, data)
        assert not followups(emulator, click)

    # Every click was answered by its refusal, the handler's only act: nothing else happened.
    assert await _queue_state(stack) == before
    assert _visible(emulator, emulator.channel_id, thread_id) == seen
    assert not copied.deleted
    row = await stack.db.fetchrow("SELECT status FROM jobs WHERE id = $1", job_id)
    assert row["status"] == "succeeded"


async def test_buttons_naming_a_withheld_image_are_refused(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "imagine", {"prompt": "a statue --steps 2 --seed 3", "model": "tiny-strict"}
    )
    await emulator.wait_response(command)
    thread_id, job_id = command.original_message_id, job_id_of(command)
    await wait_delivered(stack, job_id, within=180)
    (held,) = [m for m in emulator.messages_in(thread_id) if result_id("delete", job_id, 0) in m.custom_ids()]
    assert held.attachments == [] and "withheld" in held.content
    # The buttons it would have had, made by hand in the same server.
    copied = _copy_of(emulator, result_components(job_id, 2), thread_id, "alice")  # U1, V1, F1 on image 0
    before = await _queue_state(stack)

    for action in ("upscale", "vary", "faces"):
        click = await emulator.click(copied.id, result_id(action, job_id, 0))
        found = await emulator.wait_until(
            lambda click=click: [m for m in followups(emulator, click) if "withheld" in m.content],
            10,
            f"the refusal of {action}",
        )
        assert found[0].flags & EPHEMERAL and "safety filter" in found[0].content
        # The deferral's "thinking…" message was withdrawn.
        assert emulator.messages[click.original_message_id].deleted

    assert await _queue_state(stack) == before
