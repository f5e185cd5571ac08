"""`/upscale image` and `/imagine … image:`: attachments downloaded at once; bad ones refused ephemerally; an
image-to-image result is the one `atelier imagine --image` makes with the same seed and inputs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from bots.discord.components import result_id
from engine.output import png_bytes
from tests.discord import payloads as p
from tests.discord.emulator import Upload
from tests.discord.helpers import (
    assert_edits_spaced,
    astronaut_png,
    followups,
    job_id_of,
    job_row,
    noise_png,
    pixels,
    results_of,
    size_of,
    wait_status,
)
from tests.discord.stack import Stack, run_cli_imagine
from tests.support import replayed_content

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def test_upscale_posts_the_4x_image_in_the_jobs_thread(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash("upscale", {"image": Upload("photo.png", noise_png(80, 64))})
    await emulator.wait_response(command)
    assert command.callback_type == 5 and command.callback_at - command.dispatched_at < 3.0
    thread_id = command.original_message_id
    await wait_status(emulator, thread_id, "✅ Done", within=180)
    (posted,) = results_of(emulator, thread_id, job_id_of(command))
    assert size_of(posted.attachments[0].data) == (320, 256)
    assert (await job_row(stack, job_id_of(command)))["kind"] == "upscale"


async def test_upscale_with_faces_upscales_then_restores_the_face(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash("upscale", {"image": Upload("me.png", astronaut_png(128)), "faces": True})
    await emulator.wait_response(command)
    await wait_status(emulator, command.original_message_id, "✅ Done", within=240)
    (posted,) = results_of(emulator, command.original_message_id, job_id_of(command))
    row = await job_row(stack, job_id_of(command))
    spec = json.loads(row["spec"])
    assert row["kind"] == "enhance" and spec["scale"] == 4 and spec["upscaler"]
    assert size_of(posted.attachments[0].data) == (512, 512)
    # Against the plain 4x upscale of the same picture: the face was replaced, a far corner was not.
    plain = await emulator.slash("upscale", {"image": Upload("me.png", astronaut_png(128))})
    await emulator.wait_response(plain)
    await wait_status(emulator, plain.original_message_id, "✅ Done", within=240)
    (upscaled,) = results_of(emulator, plain.original_message_id, job_id_of(plain))
    restored, reference = pixels(posted.attachments[0].data), pixels(upscaled.attachments[0].data)
    face = (slice(4 * 16, 4 * 42), slice(4 * 43, 4 * 69))
    assert (restored[face] != reference[face]).any(axis=2).mean() > 0.9
    assert np.array_equal(restored[400:, 400:], reference[400:, 400:])


async def test_imagine_with_an_image_equals_atelier_imagine_with_the_same_seed_and_image(
    stack: Stack, tmp_path: Path
) -> None:
    """Issue 5's Done-when: deferred inside 3 s, a thread, coalesced progress edits, the result with its buttons,
    and the very bytes `atelier imagine PROMPT --image PATH` makes with the same seed."""
    emulator = stack.emulator
    source = noise_png(512, 512)
    (tmp_path / "in.png").write_bytes(source)
    # The tiny model's largest job (four 512² images, 30 denoising steps: about 25 s on two cores), so that
    # progress edits happen between the first and the last even on a machine several times faster.
    flags = "--seed 7 --steps 50 --count 4 --model tiny".split()
    reference = asyncio.create_task(
        run_cli_imagine(stack.env, tmp_path, "a red fox", "--image", str(tmp_path / "in.png"), *flags)
    )
    await stack.idle_queue()
    command = await emulator.slash(
        "imagine",
        {"prompt": "a red fox --steps 50 --seed 7 --n 4", "model": "tiny", "image": Upload("in.png", source)},
    )
    await emulator.wait_response(command)
    assert command.callback_type == 5 and command.callback_at - command.dispatched_at < 3.0  # type: ignore[operator]
    status_id = command.original_message_id
    await wait_status(emulator, status_id, "✅ Done", within=300)
    assert emulator.channels[status_id]["type"] == p.PUBLIC_THREAD
    job_id = job_id_of(command)
    (posted,) = results_of(emulator, status_id, job_id)
    progress = [
        r
        for r in emulator.requests_for(status_id, "PATCH")
        if r.status == 200 and "step" in r.payload["content"]
    ]
    assert len(progress) >= 2 and all("/30" in r.payload["content"] for r in progress)
    assert_edits_spaced(emulator)
    assert posted.custom_ids() == [
        *(result_id(action, job_id, i) for action in ("upscale", "vary", "faces") for i in range(4)),
        result_id("reroll", job_id, 0),
        result_id("delete", job_id, 0),
    ]
    assert len(posted.attachments) == 4
    # The CLI prints the last image's path last; the same pixels (each file has its own C2PA signature).
    assert replayed_content(posted.attachments[-1].data) == replayed_content(await reference)
    assert (await job_row(stack, job_id))["kind"] == "vary"


async def test_imagine_with_an_image_is_image_to_image(stack: Stack) -> None:
    emulator = stack.emulator
    options = {
        "prompt": "a red fox --steps 2 --seed 9 --count 2",
        "model": "tiny",
        "image": Upload("in.png", noise_png(64, 64)),
    }
    command = await emulator.slash("imagine", options)
    await emulator.wait_response(command)
    assert command.callback_type == 5
    await wait_status(emulator, command.original_message_id, "✅ Done", within=180)
    (posted,) = results_of(emulator, command.original_message_id, job_id_of(command))
    assert len(posted.attachments) == 2 and size_of(posted.attachments[0].data) == (64, 64)
    row = await job_row(stack, job_id_of(command))
    spec = json.loads(row["spec"])
    assert row["kind"] == "vary" and spec["prompt"] == "a red fox" and spec["seed"] == 9
    assert spec["image"].startswith("inputs/")


def _huge_png() -> bytes:
    return png_bytes(PILImage.new("RGB", (5000, 4000)))  # 20 megapixels, a few kilobytes of PNG


@pytest.mark.parametrize(
    ("command", "upload", "expected", "deferred"),
    [
        ("upscale", Upload("notes.txt", b"hello", "text/plain"), "is not an image", False),
        ("upscale", Upload("big.png", b"x" * 100, size=30 * 2**20), "the limit is 20 MiB", False),
        ("upscale", Upload("huge.png", _huge_png()), "megapixels", True),
        ("upscale", Upload("fake.png", b"not a png at all"), "not an image Atelier can read", True),
        ("imagine", Upload("notes.txt", b"hello", "text/plain"), "is not an image", False),
        ("imagine", Upload("huge.png", _huge_png()), "megapixels", True),
    ],
    ids=[
        "upscale-not-image",
        "upscale-bytes",
        "upscale-pixels",
        "upscale-garbage",
        "imagine-not-image",
        "imagine-pixels",
    ],
)
async def test_a_bad_attachment_is_refused_ephemerally_and_nothing_is_enqueued(
    stack: Stack, command: str, upload: Upload, expected: str, deferred: bool
) -> None:
    emulator = stack.emulator
    options = {"image": upload} | ({"prompt": "a fox --steps 2"} if command == "imagine" else {})
    interaction = await emulator.slash(command, options)
    await emulator.wait_response(interaction)
    if not deferred:
        assert interaction.callback_type == 4 and interaction.callback_data["flags"] & 64
        assert expected in interaction.callback_data["content"]
    else:
        found = await emulator.wait_until(
            lambda: [m for m in followups(emulator, interaction) if expected in m.content], 15, "the refusal"
        )
        assert found[0].flags & 64
        assert emulator.messages[interaction.original_message_id].deleted
    await asyncio.sleep(0.3)
    assert await job_row(stack, job_id_of(interaction)) is None
