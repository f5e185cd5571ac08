"""The editing loop in Discord, against the emulator with the real bot, worker, Redis, PostgreSQL and tiny models:
the buttons under a single image (zoom, pan, vary subtle/strong, custom zoom's modal), remix mode and private
mode from /settings, and styles.

Zoom Out 2× runs here at 512² → 1024², the size the issue names: the border is painted scaled down into the
tiny inpainter's 512² limit and enlarged, and the source is pasted back whole (engine/canvas.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from bots.discord.components import loop_id, modal_id, result_id
from tests.discord.emulator import DiscordEmulator, Interaction, Message
from tests.discord.helpers import (
    followups,
    job_id_of,
    job_row,
    open_settings,
    results_of,
    toggle,
    wait_delivered,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

EPHEMERAL = 64


def pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


async def single_result(stack: Stack, prompt: str) -> tuple[Message, str]:
    """A one-image /imagine result and its job id."""
    command = await stack.emulator.slash("imagine", {"prompt": prompt, "model": "tiny"})
    await stack.emulator.wait_response(command)
    job_id = job_id_of(command)
    await wait_delivered(stack, job_id, within=180)
    (posted,) = results_of(stack.emulator, command.original_message_id, job_id)
    return posted, job_id


async def run_button(stack: Stack, posted: Message, custom_id: str) -> tuple[Interaction, bytes]:
    """Click, wait for the new job's one image, return the click and the image."""
    click = await stack.emulator.click(posted.id, custom_id)
    await stack.emulator.wait_response(click)
    assert click.callback_type == 5, click.callback_data
    new = job_id_of(click)
    await wait_delivered(stack, new, within=180)
    (result,) = results_of(stack.emulator, posted.channel_id, new)
    return click, result.attachments[0].data


async def submit_modal(
    emulator: DiscordEmulator, message: Message, custom_id: str, values: list[str], user: str = "alice"
) -> Interaction:
    """A MODAL_SUBMIT for the modal `custom_id` opened from `message`, its text inputs holding `values`."""
    names = ("prompt", "extra")  # the text inputs' custom ids (bots.discord.loop.RemixModal)
    rows = [
        {"type": 1, "components": [{"type": 4, "custom_id": name, "value": value}]}
        for name, value in zip(names, values, strict=False)
    ]
    data = {"custom_id": custom_id, "components": rows}
    return await emulator._interact(5, data, user, message=message)


async def test_zoom_out_2x_and_pan_left_keep_the_source_pixels(stack: Stack) -> None:
    posted, job_id = await single_result(stack, "a lighthouse --size 512x512 --hires 1 --steps 2 --seed 21")
    source = pixels(posted.attachments[0].data)
    assert source.shape == (512, 512, 3)

    click, zoomed = await run_button(stack, posted, loop_id("zoom_2", job_id, 0))
    zoom = pixels(zoomed)
    assert zoom.shape == (1024, 1024, 3)
    assert np.array_equal(zoom[256:768, 256:768], source)  # the source whole, pixel for pixel
    row = await job_row(stack, job_id_of(click))
    spec = json.loads(row["spec"])
    assert row["kind"] == "inpaint" and spec["parent"] == job_id and spec["prompt"] == "a lighthouse"
    assert spec["seed"] == 21 and row["model"] == "tiny-inpaint"  # the source's seed, its family's inpainter

    _, panned = await run_button(stack, posted, loop_id("pan_left", job_id, 0))
    pan = pixels(panned)
    assert pan.shape == (512, 768, 3)
    assert np.array_equal(pan[:, 256:], source)


async def test_vary_subtle_stays_closer_than_vary_strong(stack: Stack) -> None:
    posted, job_id = await single_result(stack, "a meadow --size 64x64 --steps 8 --seed 5")
    source = pixels(posted.attachments[0].data)
    distances = {}
    for how in ("subtle", "strong"):
        click, image = await run_button(stack, posted, loop_id(f"vary_{how}", job_id, 0))
        distances[how] = np.abs(pixels(image) - source).mean()
        spec = json.loads((await job_row(stack, job_id_of(click)))["spec"])
        assert (spec["seed"], spec["parent"], spec["model"]) == (5, job_id, "tiny")
    assert 0 < distances["subtle"] < distances["strong"]


async def test_custom_zoom_asks_for_a_factor_and_refuses_a_bad_one(stack: Stack) -> None:
    emulator = stack.emulator
    posted, job_id = await single_result(stack, "a canyon --size 64x64 --steps 2 --seed 8")
    click = await emulator.click(posted.id, loop_id("zoom_custom", job_id, 0))
    await emulator.wait_response(click)
    assert click.callback_type == 9  # a modal
    assert click.callback_data["custom_id"] == modal_id("zoom_custom", job_id, 0)
    queued_before = await stack.db.fetchval("SELECT count(*) FROM jobs")

    bad = await submit_modal(emulator, posted, modal_id("zoom_custom", job_id, 0), ["a canyon", "3"])
    await emulator.wait_response(bad)
    assert bad.callback_type == 4 and bad.callback_data["flags"] & EPHEMERAL
    assert "between 1.1 and 2" in bad.callback_data["content"]
    assert await stack.db.fetchval("SELECT count(*) FROM jobs") == queued_before  # nothing queued

    # The modal is answered on a fresh click (discord.py keeps the open one in memory).
    again = await emulator.click(posted.id, loop_id("zoom_custom", job_id, 0))
    await emulator.wait_response(again)
    good = await submit_modal(emulator, posted, modal_id("zoom_custom", job_id, 0), ["a red canyon", "1.5"])
    await emulator.wait_response(good)
    assert good.callback_type == 5
    await wait_delivered(stack, job_id_of(good), within=180)
    (result,) = results_of(emulator, posted.channel_id, job_id_of(good))
    assert pixels(result.attachments[0].data).shape == (96, 96, 3)
    assert json.loads((await job_row(stack, job_id_of(good)))["spec"])["prompt"] == "a red canyon"


async def test_a_button_on_a_deleted_job_says_it_is_gone(stack: Stack) -> None:
    emulator = stack.emulator
    posted, job_id = await single_result(stack, "a kite --size 64x64 --steps 2 --seed 2")
    await stack.db.execute("DELETE FROM jobs WHERE id = $1", job_id)
    click = await emulator.click(posted.id, loop_id("zoom_2", job_id, 0))
    found = await emulator.wait_until(
        lambda: [m for m in followups(emulator, click) if "gone" in m.content], 10, "the refusal"
    )
    assert found[0].flags & EPHEMERAL
    assert result_id("delete", job_id, 0) in posted.custom_ids()


async def test_with_remix_on_vary_opens_a_modal_and_runs_the_submitted_prompt(stack: Stack) -> None:
    emulator = stack.emulator
    posted, job_id = await single_result(stack, "a harbour --size 64x64 --steps 4 --seed 12")
    panel = await open_settings(emulator)
    await toggle(emulator, panel, "remix", "on")
    try:
        click = await emulator.click(posted.id, loop_id("vary_strong", job_id, 0))
        await emulator.wait_response(click)
        assert click.callback_type == 9 and click.callback_data["custom_id"] == modal_id(
            "vary_strong", job_id, 0
        )
        fields = [c for row in click.callback_data["components"] for c in row["components"]]
        assert [f["value"] for f in fields] == ["a harbour", "0.8"]  # the source's prompt, Strong's strength

        bad = await submit_modal(emulator, posted, modal_id("vary_strong", job_id, 0), ["a harbour", "1.5"])
        await emulator.wait_response(bad)
        assert bad.callback_type == 4 and "at most 1" in bad.callback_data["content"]

        again = await emulator.click(posted.id, loop_id("vary_strong", job_id, 0))
        await emulator.wait_response(again)
        submitted = await submit_modal(
            emulator, posted, modal_id("vary_strong", job_id, 0), ["a harbour at night", "0.5"]
        )
        await emulator.wait_response(submitted)
        assert submitted.callback_type == 5
        await wait_delivered(stack, job_id_of(submitted), within=180)
        spec = json.loads((await job_row(stack, job_id_of(submitted)))["spec"])
        assert (spec["prompt"], spec["strength"], spec["parent"]) == ("a harbour at night", 0.5, job_id)

        # Reroll too: the same request, a new seed, the prompt from the modal.
        reroll = await emulator.click(posted.id, result_id("reroll", job_id, 0))
        await emulator.wait_response(reroll)
        assert reroll.callback_type == 9 and reroll.callback_data["custom_id"] == modal_id(
            "reroll", job_id, 0
        )
        rerolled = await submit_modal(emulator, posted, modal_id("reroll", job_id, 0), ["a harbour in fog"])
        await emulator.wait_response(rerolled)
        await wait_delivered(stack, job_id_of(rerolled), within=180)
        spec = json.loads((await job_row(stack, job_id_of(rerolled)))["spec"])
        assert spec["kind"] == "imagine" and spec["prompt"] == "a harbour in fog" and spec["seed"] != 12

        # And V under a grid: the modal has the strength too; the job keeps the grid's image count.
        command = await emulator.slash(
            "imagine", {"prompt": "two boats --size 64x64 --steps 2 --n 2", "model": "tiny"}
        )
        await emulator.wait_response(command)
        await wait_delivered(stack, job_id_of(command), within=180)
        (grid,) = results_of(emulator, command.original_message_id, job_id_of(command))
        v2 = await emulator.click(grid.id, result_id("vary", job_id_of(command), 1))
        await emulator.wait_response(v2)
        assert v2.callback_type == 9
        varied = await submit_modal(
            emulator, grid, modal_id("vary", job_id_of(command), 1), ["two red boats", "0.4"]
        )
        await emulator.wait_response(varied)
        await wait_delivered(stack, job_id_of(varied), within=180)
        spec = json.loads((await job_row(stack, job_id_of(varied)))["spec"])
        assert (spec["prompt"], spec["strength"], spec["count"]) == ("two red boats", 0.4, 2)
    finally:
        await toggle(emulator, panel, "remix", "off")


async def test_with_private_mode_on_imagine_posts_nothing_in_the_channel(stack: Stack) -> None:
    emulator = stack.emulator
    panel = await open_settings(emulator)
    await toggle(emulator, panel, "private", "on")
    try:
        before = {m.id for m in emulator.messages_in(emulator.channel_id)}
        command = await emulator.slash(
            "imagine", {"prompt": "a secret garden --steps 2 --seed 4", "model": "tiny"}
        )
        await emulator.wait_response(command)
        assert command.callback_type == 5 and command.callback_data["flags"] & EPHEMERAL
        job_id = job_id_of(command)
        await wait_delivered(stack, job_id, within=180)
        results = [m for m in followups(emulator, command) if m.attachments]
        assert len(results) == 1 and results[0].flags & EPHEMERAL  # the asker received the image
        assert f":{job_id}:" in "".join(results[0].custom_ids())
        new = [m for m in emulator.messages_in(emulator.channel_id) if m.id not in before]
        assert new and all(m.flags & EPHEMERAL for m in new), [(m.id, m.flags, m.content) for m in new]
        assert command.original_message_id not in emulator.channels  # no thread was opened
    finally:
        await toggle(emulator, panel, "private", "off")


async def test_style_expands_into_the_recorded_prompt(stack: Stack) -> None:
    _, job_id = await single_result(stack, "a fox --style watercolor --steps 2 --seed 1")
    row = await job_row(stack, job_id)
    spec = json.loads(row["spec"])
    assert spec["prompt"] == "watercolor painting of a fox, soft washes, paper texture"
    assert spec["style"] == "watercolor" and "3d render" in spec["negative"]
    # A style that is not built in may be the server's own: looked up after the deferral, then refused.
    jobs_before = await stack.db.fetchval("SELECT count(*) FROM jobs")
    emulator = stack.emulator
    unknown = await emulator.slash("imagine", {"prompt": "a fox --style nope", "model": "tiny"})
    found = await emulator.wait_until(
        lambda: [m for m in followups(emulator, unknown) if "nknown style 'nope'" in m.content],
        10,
        "the refusal",
    )
    assert found[0].flags & EPHEMERAL and emulator.messages[unknown.original_message_id].deleted
    assert await stack.db.fetchval("SELECT count(*) FROM jobs") == jobs_before  # nothing queued


async def choose(emulator: DiscordEmulator, panel: Message, field: str, value: str) -> Interaction:
    data = {"custom_id": f"atelier:settings:{field}", "component_type": 3, "values": [value]}
    chosen = await emulator._interact(3, data, "alice", message=panel)
    await emulator.wait_response(chosen)
    return chosen


async def test_server_styles_and_member_defaults_reach_imagine(stack: Stack) -> None:
    emulator = stack.emulator
    ink = {"name": "Ink", "prompt": "sumi-e ink painting of {prompt}", "negative": "colour"}
    refused = await emulator.slash("atelier", ink, subcommand="style add", user="bob")
    await emulator.wait_response(refused)
    assert refused.callback_type == 4 and "Only" in refused.callback_data["content"]
    added = await emulator.slash("atelier", ink, subcommand="style add", roles=[emulator.admin_role_id])
    await emulator.wait_response(added)
    assert "Style `ink` saved" in added.callback_data["content"]
    listed = await emulator.slash("atelier", {}, subcommand="style list", user="bob")
    await emulator.wait_response(listed)
    assert "`ink`: sumi-e ink painting of {prompt}" in listed.callback_data["content"]

    panel = await open_settings(emulator)
    bad = await choose(emulator, panel, "steps", "999")
    assert bad.callback_type == 4 and "teps must be one of" in bad.callback_data["content"]
    for field, value in (("style", "ink"), ("steps", "4")):
        chosen = await choose(emulator, panel, field, value)
        assert chosen.callback_type == 7 and f"{field} **{value}**" in emulator.messages[panel.id].content
    try:
        _, job_id = await single_result(stack, "a heron --size 64x64 --seed 3")
        spec = json.loads((await job_row(stack, job_id))["spec"])
        assert (spec["prompt"], spec["negative"], spec["steps"]) == (
            "sumi-e ink painting of a heron",
            "colour",
            4,
        )
        _, typed = await single_result(stack, "a heron --size 64x64 --seed 3 --steps 2 --style photo")
        spec = json.loads((await job_row(stack, typed))["spec"])
        assert spec["steps"] == 2 and spec["style"] == "photo"  # what was typed wins
    finally:
        for field in ("style", "steps"):
            await choose(emulator, panel, field, "default")


async def test_upscale_creative_and_chaos(stack: Stack) -> None:
    posted, job_id = await single_result(stack, "a mossy stone --size 64x64 --steps 4 --seed 9")
    _, subtle = await run_button(stack, posted, loop_id("upscale_subtle", job_id, 0))
    creative_click, creative = await run_button(stack, posted, loop_id("upscale_creative", job_id, 0))
    assert pixels(subtle).shape == pixels(creative).shape == (256, 256, 3)
    row = await job_row(stack, job_id_of(creative_click))
    spec = json.loads(row["spec"])
    assert row["kind"] == "creative_upscale" and (spec["parent"], spec["model"]) == (job_id, "tiny")
    assert np.abs(pixels(creative) - pixels(subtle)).mean() > 1  # the model drew over the upscaler's pixels

    command = await stack.emulator.slash(
        "imagine", {"prompt": "a reef --size 64x64 --steps 2 --seed 4 --n 2 --chaos 80", "model": "tiny"}
    )
    await stack.emulator.wait_response(command)
    await wait_delivered(stack, job_id_of(command), within=180)
    spec = json.loads((await job_row(stack, job_id_of(command)))["spec"])
    assert spec["chaos"] == 80
    (result,) = results_of(stack.emulator, command.original_message_id, job_id_of(command))
    assert len(result.attachments) == 2
