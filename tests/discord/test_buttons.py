"""Buttons: Cancel on a queued and a running job, the result buttons, and buttons after a bot restart."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image as PILImage

from bots.discord.components import cancel_id, loop_id, result_id
from tests.discord.emulator import DiscordEmulator, Interaction, Message
from tests.discord.helpers import (
    followups,
    job_id_of,
    job_row,
    results_in,
    results_of,
    wait_result,
    wait_status,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def click_and_wait(
    emulator: DiscordEmulator, message_id: int, custom_id: str, **kwargs: object
) -> Interaction:
    click = await emulator.click(message_id, custom_id, **kwargs)  # type: ignore[arg-type]
    await emulator.wait_response(click)
    assert click.callback_at - click.dispatched_at < 3.0  # type: ignore[operator]
    return click


async def refusal(emulator: DiscordEmulator, click: Interaction, text: str) -> Message:
    found = await emulator.wait_until(
        lambda: [m for m in followups(emulator, click) if text in m.content],
        10,
        f"a followup saying {text!r}",
    )
    assert found[0].flags & 64, "refusals are ephemeral"
    return found[0]


async def test_cancel_stops_a_queued_job_before_it_runs_and_a_running_one_midway(stack: Stack) -> None:
    emulator = stack.emulator
    await stack.idle_queue()
    long = await emulator.slash(
        "imagine",
        {"prompt": "a slow cathedral --size 512x512 --hires 1 --steps 50 --count 4", "model": "tiny"},
    )
    await emulator.wait_response(long)
    long_status = long.original_message_id
    await wait_status(emulator, long_status, "step", within=120)
    queued = await emulator.slash("imagine", {"prompt": "a patient snail --steps 4", "model": "tiny"})
    await emulator.wait_response(queued)
    queued_status = queued.original_message_id
    await wait_status(emulator, queued_status, "Queued: next up", within=10)  # after the running one

    # Someone else may not cancel it.
    click = await click_and_wait(emulator, queued_status, cancel_id(job_id_of(queued)), user="bob")
    await refusal(emulator, click, "Only the member who asked")
    assert (await job_row(stack, job_id_of(queued)))["status"] == "queued"

    # The owner cancels the queued job, then the running one.
    await click_and_wait(emulator, queued_status, cancel_id(job_id_of(queued)))
    await wait_status(emulator, queued_status, "Cancelled by", within=10)
    await click_and_wait(emulator, long_status, cancel_id(job_id_of(long)))
    await wait_status(emulator, long_status, "Cancelled by", within=10)

    await stack.idle_queue()
    await asyncio.sleep(2.5)  # time for any stray progress edit to (wrongly) land
    for command, status_id in ((long, long_status), (queued, queued_status)):
        row = await job_row(stack, job_id_of(command))
        assert row["status"] == "cancelled"
        status = emulator.messages[status_id]
        assert "Cancelled by" in status.content and status.components == []
        assert not [m for m in emulator.messages_in(status_id) if m.attachments], (
            "a cancelled job posted results"
        )
    assert (await job_row(stack, job_id_of(queued)))["started_at"] is None  # it never ran


async def test_reroll_makes_a_new_job_and_delete_is_for_the_asker_or_an_admin(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "imagine", {"prompt": "two small planets --count 2 --steps 2 --seed 40", "model": "tiny"}
    )
    await emulator.wait_response(command)
    thread_id = command.original_message_id
    result = await wait_result(emulator, thread_id)
    job_id = job_id_of(command)
    assert len(result.attachments) == 2
    assert result.custom_ids() == [
        *(result_id("upscale", job_id, i) for i in (0, 1)),
        *(result_id("vary", job_id, i) for i in (0, 1)),
        *(result_id("faces", job_id, i) for i in (0, 1)),
        result_id("reroll", job_id, 0),
        result_id("delete", job_id, 0),
    ]

    # Bob may reroll (a new job, his own) but not delete Alice's images.
    delete = await click_and_wait(emulator, result.id, result_id("delete", job_id, 0), user="bob")
    await refusal(emulator, delete, "Only the member who asked")
    assert not emulator.messages[result.id].deleted
    reroll = await click_and_wait(emulator, result.id, result_id("reroll", job_id, 0), user="bob")
    assert reroll.callback_type == 5
    reroll_status = emulator.messages[reroll.original_message_id]
    assert reroll_status.channel_id == thread_id  # the new status message sits in the same thread
    await wait_status(emulator, reroll_status.id, "✅ Done", within=180)
    rerolled = [m for m in results_in(emulator, thread_id) if m.id != result.id]
    assert len(rerolled) == 1
    reroll_row = await job_row(stack, job_id_of(reroll))
    assert reroll_row["spec"] != (await job_row(stack, job_id))["spec"]  # a new seed, all else equal
    assert f"<@{emulator.users['bob']['id']}>" in rerolled[0].content

    # Alice deletes her own images; an admin (by the configured role) deletes Bob's.
    await click_and_wait(emulator, result.id, result_id("delete", job_id, 0))
    await emulator.wait_until(lambda: emulator.messages[result.id].deleted, 10, "Alice's result deleted")
    admin_delete = await click_and_wait(
        emulator,
        rerolled[0].id,
        result_id("delete", job_id_of(reroll), 0),
        user="carol",
        roles=[emulator.admin_role_id],
    )
    await emulator.wait_until(
        lambda: emulator.messages[rerolled[0].id].deleted, 10, "Bob's result deleted by an admin"
    )
    assert not followups(emulator, admin_delete)


async def test_u_upscales_and_v_varies_one_image_into_the_thread(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "imagine", {"prompt": "a lantern --count 2 --steps 2 --seed 50", "model": "tiny"}
    )
    await emulator.wait_response(command)
    thread_id, job_id = command.original_message_id, job_id_of(command)
    result = await wait_result(emulator, thread_id)

    upscale = await click_and_wait(emulator, result.id, result_id("upscale", job_id, 1))
    assert (
        upscale.callback_type == 5 and emulator.messages[upscale.original_message_id].channel_id == thread_id
    )
    await wait_status(emulator, upscale.original_message_id, "✅ Done", within=180)
    upscaled = job_id_of(upscale)
    (posted,) = results_of(emulator, thread_id, upscaled)
    (image,) = posted.attachments
    assert _size(image.data) == (256, 256)  # image 2 (64×64) made 4× larger by the default upscaler
    assert loop_id("zoom_2", upscaled, 0) in posted.custom_ids()  # a single image: the editing loop
    assert posted.custom_ids()[-1] == result_id("delete", upscaled, 0)
    assert (await job_row(stack, upscaled))["kind"] == "upscale"
    assert json.loads((await job_row(stack, upscaled))["spec"])["parent"] == job_id  # recorded as its child

    vary = await click_and_wait(emulator, result.id, result_id("vary", job_id, 0))
    await wait_status(emulator, vary.original_message_id, "✅ Done", within=180)
    varied = results_of(emulator, thread_id, job_id_of(vary))
    assert len(varied) == 1 and len(varied[0].attachments) == 2  # as many as the source job made
    row = await job_row(stack, job_id_of(vary))
    assert row["kind"] == "vary" and json.loads(row["spec"])["prompt"] == "a lantern"


async def test_buttons_keep_working_after_the_bot_and_the_worker_restart(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash("imagine", {"prompt": "a phoenix --steps 2 --seed 3", "model": "tiny"})
    await emulator.wait_response(command)
    result = await wait_result(emulator, command.original_message_id)

    await stack.stop("bot")
    await stack.stop("worker")
    await stack.start_worker()
    await stack.start_bot()

    upscale = await click_and_wait(emulator, result.id, loop_id("upscale_subtle", job_id_of(command), 0))
    assert upscale.callback_type == 5
    await wait_status(emulator, upscale.original_message_id, "✅ Done", within=180)
    posted = results_of(emulator, command.original_message_id, job_id_of(upscale))
    assert len(posted) == 1 and _size(posted[0].attachments[0].data) == (256, 256)  # the 4× upscale


async def test_model_names_autocomplete_from_the_registry(stack: Stack) -> None:
    emulator = stack.emulator
    typed = await emulator.autocomplete("imagine", "model", "TIN")
    await emulator.wait_response(typed)
    assert typed.callback_type == 8
    names = [choice["value"] for choice in typed.callback_data["choices"]]
    assert names and all("tin" in name for name in names) and "tiny" in names
    everything = await emulator.autocomplete("imagine", "model", "")
    await emulator.wait_response(everything)
    assert {"sd15", "sdxl", "tiny"} <= {c["value"] for c in everything.callback_data["choices"]}


def _size(png: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(png)) as image:
        return image.size
