"""Guided generation in Discord end to end (the real bot and worker against the emulator): /imagine with a
ControlNet control and a style reference, /blend, /describe and its buttons; bad guidance refused ephemerally
with nothing queued."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from bots.discord.describe_rows import describe_id
from engine.output import png_bytes
from tests.discord.emulator import Upload
from tests.discord.helpers import job_id_of, job_row, results_of, size_of, wait_status
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


def blocks(seed: int) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((64, 64, 3), np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, 40, 2)
        pixels[y : y + 24, x : x + 24] = rng.integers(0, 256, 3)
    return PILImage.fromarray(pixels)


def pixel_digest(image: PILImage.Image) -> str:
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


async def finished(stack: Stack, command) -> tuple[dict, int]:
    await stack.emulator.wait_response(command)
    assert command.callback_type == 5, command.callback_data
    thread_id = command.original_message_id
    await wait_status(stack.emulator, thread_id, "✅ Done", within=180)
    row = await job_row(stack, job_id_of(command))
    assert row is not None and row["status"] == "succeeded"
    return json.loads(row["spec"]), thread_id


async def test_imagine_with_control_and_a_style_reference_runs_through_controlnet(stack: Stack) -> None:
    source = blocks(1)
    options = {
        "prompt": "a house --control-weight 0.7 --sw 0.5 --steps 3",
        "control": "canny",
        "image": Upload("edges.png", png_bytes(source)),
        "sref": Upload("style.png", png_bytes(blocks(2))),
    }
    command = await stack.emulator.slash("imagine", options)
    spec, thread_id = await finished(stack, command)

    assert spec["kind"] == "guided" and spec["control"] == "canny" and spec["control_weight"] == 0.7
    assert spec["observed"]["pipeline"] == "StableDiffusionControlNetPipeline"
    edges = cv2.Canny(np.asarray(source.convert("L")), 100, 200)
    assert spec["observed"]["condition_sha256"] == pixel_digest(PILImage.fromarray(np.stack([edges] * 3, -1)))
    assert [(r["role"], r["weight"], r["sha256"]) for r in spec["references"]] == [
        ("style", 0.5, pixel_digest(blocks(2)))
    ]
    (posted,) = results_of(stack.emulator, thread_id, job_id_of(command))
    assert size_of(posted.attachments[0].data) == (64, 64)


async def progress_of(stack: Stack, job_id: str) -> list[tuple[int, int]]:
    """The (step, total) progress events in the job's stream, in order."""
    entries = await stack.redis.xrange(f"atelier:events:{job_id}")
    found = [json.loads(fields[b"data"]) for _, fields in entries if fields[b"event"] == b"progress"]
    return [(data["step"], data["total"]) for data in found]


async def test_imagine_above_the_native_size_goes_through_hires_fix_unless_hires_1(stack: Stack) -> None:
    # tiny's native size is 64²: 128² is made at 64² (8 steps), upscaled and refined at 128² (4 steps)
    command = await stack.emulator.slash(
        "imagine", {"prompt": "a lighthouse --size 128x128 --steps 8 --seed 6"}
    )
    spec, thread_id = await finished(stack, command)
    assert spec["kind"] == "imagine" and (spec["first_width"], spec["first_height"]) == (64, 64)
    (posted,) = results_of(stack.emulator, thread_id, job_id_of(command))
    assert size_of(posted.attachments[0].data) == (128, 128)
    progress = await progress_of(stack, job_id_of(command))
    totals = [total for _, total in progress]
    assert progress[-1] == (4, 4) and 8 in totals and totals == sorted(totals, reverse=True), progress

    command = await stack.emulator.slash(
        "imagine", {"prompt": "a lighthouse --size 128x128 --steps 8 --seed 6 --hires 1"}
    )
    spec, thread_id = await finished(stack, command)
    assert spec["kind"] == "imagine" and spec["hires"] == 1.0 and spec["first_width"] is None
    (direct,) = results_of(stack.emulator, thread_id, job_id_of(command))
    assert size_of(direct.attachments[0].data) == (128, 128)
    assert {total for _, total in await progress_of(stack, job_id_of(command))} == {8}
    assert direct.attachments[0].data != posted.attachments[0].data


async def test_blend_of_three_images_records_them(stack: Stack) -> None:
    uploads = {f"image{i + 1}": Upload(f"in{i}.png", png_bytes(blocks(10 + i))) for i in range(3)}
    command = await stack.emulator.slash("blend", {**uploads, "prompt": "--steps 2"})
    spec, thread_id = await finished(stack, command)
    assert [r["sha256"] for r in spec["references"]] == [pixel_digest(blocks(10 + i)) for i in range(3)]
    assert {r["role"] for r in spec["references"]} == {"blend"}
    assert len(results_of(stack.emulator, thread_id, job_id_of(command))) == 1


async def test_describe_posts_four_prompts_with_buttons_and_a_button_queues_its_prompt(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash("describe", {"image": Upload("photo.png", png_bytes(blocks(4)))})
    spec, _ = await finished(stack, command)
    job_id = job_id_of(command)
    prompts = spec["prompts"]
    assert len(prompts) == 4
    posted = await emulator.wait_until(
        lambda: [m for m in emulator.messages.values() if describe_id(job_id, 0) in m.custom_ids()],
        30,
        "the prompts",
    )
    message = posted[0]
    assert message.custom_ids() == [describe_id(job_id, n) for n in range(4)]
    for prompt in prompts:
        assert prompt in message.content

    click = await emulator.click(message.id, describe_id(job_id, 2))
    await emulator.wait_response(click)
    await wait_status(emulator, click.original_message_id, "✅ Done", within=180)
    row = await job_row(stack, job_id_of(click))
    assert row["kind"] == "imagine" and json.loads(row["spec"])["prompt"] == prompts[2]


@pytest.mark.parametrize(
    ("command", "options", "expected"),
    [
        (
            "imagine",
            {"prompt": "a house", "control": "canny", "image": Upload("notes.txt", b"hello", "text/plain")},
            "is not an image",
        ),
        (
            "imagine",
            {"prompt": "a house --control-weight 2.5", "control": "canny", "image": "{png}"},
            "control weight must be between 0 and 2",
        ),
        (
            "imagine",
            {"prompt": "a house --model tiny-flux", "control": "canny", "image": "{png}"},
            "has no ControlNet for canny",
        ),
        ("imagine", {"prompt": "a house --sw 3", "sref": "{png}"}, "reference weight must be between"),
        ("imagine", {"prompt": "a house", "control": "canny"}, "needs an image"),
    ],
)
async def test_bad_guidance_is_refused_ephemerally_and_nothing_is_queued(
    stack: Stack, command: str, options: dict, expected: str
) -> None:
    options = {k: Upload("i.png", png_bytes(blocks(0))) if v == "{png}" else v for k, v in options.items()}
    interaction = await stack.emulator.slash(command, options)
    await stack.emulator.wait_response(interaction)
    assert interaction.callback_type == 4, interaction.callback_data
    assert interaction.callback_data["flags"] & 64
    assert expected.lower() in interaction.callback_data["content"].lower()
    assert await job_row(stack, job_id_of(interaction)) is None
