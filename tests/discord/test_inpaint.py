"""`/inpaint`: an image and a mask become an inpainting job whose result lands in its thread; bad requests are
refused ephemerally before anything is enqueued."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from bots.discord.components import loop_id, result_components
from engine.output import png_bytes
from tests.discord.emulator import Upload
from tests.discord.helpers import (
    followups,
    image_sha256s,
    job_id_of,
    job_row,
    noise_png,
    pixels_sha256,
    results_of,
    size_of,
    wait_status,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


def mask_png(width: int, height: int) -> bytes:
    """White (repaint) in the middle quarter, black (keep) elsewhere."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return png_bytes(PILImage.fromarray(pixels).convert("RGB"))


async def test_inpaint_with_an_image_and_a_mask_posts_the_result_in_the_jobs_thread(stack: Stack) -> None:
    emulator = stack.emulator
    options = {
        "image": Upload("room.png", noise_png(64, 64)),
        "mode": "insertion",
        "mask": Upload("mask.png", mask_png(64, 64)),
        "prompt": "a red balloon --steps 3 --seed 11",
    }
    command = await emulator.slash("inpaint", options)
    await emulator.wait_response(command)
    assert command.callback_type == 5 and command.callback_at - command.dispatched_at < 3.0  # type: ignore[operator]
    thread_id = command.original_message_id
    assert thread_id is not None
    await wait_status(emulator, thread_id, "✅ Done", within=180)
    assert emulator.channels[thread_id]["name"] == "a red balloon"

    job_id = job_id_of(command)
    (posted,) = results_of(emulator, thread_id, job_id)
    assert size_of(posted.attachments[0].data) == (64, 64)
    assert await image_sha256s(stack, job_id) == [pixels_sha256(posted.attachments[0].data)]
    assert posted.custom_ids() == [
        b["custom_id"] for r in result_components(job_id, 1, "inpaint") for b in r["components"]
    ]
    assert loop_id("vary_subtle", job_id, 0) in posted.custom_ids()
    row = await job_row(stack, job_id)
    spec = json.loads(row["spec"])
    assert row["kind"] == "inpaint" and row["status"] == "succeeded"
    assert spec["mode"] == "insertion" and spec["prompt"] == "a red balloon" and spec["seed"] == 11
    assert spec["image"].startswith("inputs/") and spec["mask"].startswith("inputs/")
    assert spec["mask"] != spec["image"]

    # Vary on an inpainting result: variations on the default text-to-image model (an inpainting one cannot vary).
    click = await emulator.click(posted.id, loop_id("vary_subtle", job_id, 0))
    await emulator.wait_response(click)
    await wait_status(emulator, click.original_message_id, "✅ Done", within=180)
    varied = await job_row(stack, job_id_of(click))
    assert varied["kind"] == "vary" and varied["model"] == "tiny" and varied["status"] == "succeeded"
    assert json.loads(varied["spec"])["prompt"] == "a red balloon"


@pytest.mark.parametrize(
    ("options", "expected", "deferred"),
    [
        ({"mode": "insertion", "prompt": "a balloon"}, "insertion needs a mask", False),
        ({"mode": "removal"}, "removal needs a mask", False),
        ({"mode": "outpaint", "extend": "left=64,up=3"}, "extend must look like", False),
        (
            {"mode": "removal", "mask": Upload("mask.txt", b"white square", "text/plain")},
            "mask.txt is not an image",
            False,
        ),
        (
            {"mode": "removal", "mask": Upload("mask.png", b"x" * 100, size=30 * 2**20)},
            "the limit is 20 MiB",
            False,
        ),
        (
            {"mode": "insertion", "prompt": "a balloon --ar 16:9", "mask": Upload("m.png", mask_png(64, 64))},
            "--aspect does not apply to /inpaint",
            False,
        ),
        (
            {"mode": "removal", "mask": Upload("mask.png", mask_png(64, 32))},
            "aspect ratios differ",  # the engine's own check, after the download
            True,
        ),
    ],
    ids=[
        "insertion-no-mask",
        "removal-no-mask",
        "bad-extend",
        "mask-not-image",
        "mask-too-large",
        "aspect",
        "mask-shape",
    ],
)
async def test_a_bad_inpaint_request_is_refused_ephemerally_and_enqueues_nothing(
    stack: Stack, options: dict, expected: str, deferred: bool
) -> None:
    emulator = stack.emulator
    command = await emulator.slash("inpaint", {"image": Upload("room.png", noise_png(64, 64))} | options)
    await emulator.wait_response(command)
    if deferred:
        found = await emulator.wait_until(
            lambda: [m for m in followups(emulator, command) if m.content.startswith("❌")], 15, "the refusal"
        )
        assert found[0].flags & 64 and expected in found[0].content.lower(), found[0].content
        assert emulator.messages[command.original_message_id].deleted
    else:
        assert command.callback_type == 4 and command.callback_data["flags"] & 64
        assert expected.lower() in command.callback_data["content"].lower(), command.callback_data["content"]
    await asyncio.sleep(0.3)
    assert await job_row(stack, job_id_of(command)) is None


async def test_an_oversized_image_is_refused_before_download(stack: Stack) -> None:
    emulator = stack.emulator
    options = {
        "image": Upload("huge.png", b"x" * 100, size=25 * 2**20),
        "mode": "removal",
        "mask": Upload("mask.png", mask_png(64, 64)),
    }
    command = await emulator.slash("inpaint", options)
    await emulator.wait_response(command)
    assert command.callback_type == 4 and command.callback_data["flags"] & 64
    assert "huge.png is 25.0 MiB; the limit is 20 MiB" in command.callback_data["content"]
    await asyncio.sleep(0.3)
    assert await job_row(stack, job_id_of(command)) is None
