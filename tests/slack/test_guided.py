"""Guided generation from Slack (the real app over HTTP, the real worker, the emulated Web API): /imagine with
a ControlNet control and a style reference from file links, /blend, /describe and its buttons; bad guidance
gets one ephemeral answer and nothing is queued."""

from __future__ import annotations

import hashlib
import io
import json

import asyncpg
import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    action_ids,
    block_action,
    imagined,
    job_row,
    png_size,
    post_signed_form,
    slash_command,
    status_message,
)


def blocks_png(seed: int) -> tuple[PILImage.Image, bytes]:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((64, 64, 3), np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, 40, 2)
        pixels[y : y + 24, x : x + 24] = rng.integers(0, 256, 3)
    image = PILImage.fromarray(pixels)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return image, out.getvalue()


def pixel_digest(image: PILImage.Image) -> str:
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def link(emulator: SlackEmulator, seed: int) -> str:
    _, data = blocks_png(seed)
    return f"<{emulator.add_file(data, f'in{seed}.png', 'image/png')['permalink']}>"


async def command(
    http_bot: str, emulator: SlackEmulator, name: str, text: str, channel: str, reply: str
) -> None:
    fields = slash_command(text, channel=channel, response_url=emulator.response_url(reply))
    fields["command"] = name
    answer = await post_signed_form(http_bot, fields)
    assert answer.status == 200 and answer.seconds < 3


async def test_imagine_with_control_and_a_style_reference_runs_through_controlnet(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CGUIDED1"
    source, _ = blocks_png(1)
    text = (
        f"a house --control canny --image {link(slack_emulator, 1)} --control-weight 0.7 "
        f"--sref {link(slack_emulator, 2)} --sw 0.5 --steps 3"
    )
    await command(http_bot, slack_emulator, "/imagine", text, channel, "g-imagine")
    story = await imagined(slack_emulator, channel)
    assert [png_size(f) for f in story.files] == [(64, 64)]
    row = await job_row(db, story.job_id)
    spec = json.loads(row["spec"])
    assert row["kind"] == "guided" and spec["control"] == "canny" and spec["control_weight"] == 0.7
    assert spec["observed"]["pipeline"] == "StableDiffusionControlNetPipeline"
    edges = cv2.Canny(np.asarray(source.convert("L")), 100, 200)
    assert spec["observed"]["condition_sha256"] == pixel_digest(PILImage.fromarray(np.stack([edges] * 3, -1)))
    assert [(r["role"], r["weight"], r["sha256"]) for r in spec["references"]] == [
        ("style", 0.5, pixel_digest(blocks_png(2)[0]))
    ]


async def test_blend_of_three_links_records_them(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CGUIDED2"
    links = " ".join(link(slack_emulator, 10 + i) for i in range(3))
    await command(http_bot, slack_emulator, "/blend", f"{links} at night --steps 2", channel, "g-blend")
    story = await imagined(slack_emulator, channel)
    assert [png_size(f) for f in story.files] == [(64, 64)]
    spec = json.loads((await job_row(db, story.job_id))["spec"])
    assert spec["prompt"] == "at night"
    assert [r["sha256"] for r in spec["references"]] == [
        pixel_digest(blocks_png(10 + i)[0]) for i in range(3)
    ]


async def test_describe_posts_four_prompts_with_buttons_and_a_button_queues_its_prompt(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CGUIDED3"
    await command(http_bot, slack_emulator, "/describe", link(slack_emulator, 4), channel, "g-describe")
    status = await status_message(slack_emulator, channel)
    job_id = next(a for a in action_ids(status.args["blocks"]) if a.startswith("cancel:")).split(":")[1]

    def prompts_message():
        for call in slack_emulator.api_calls(
            "chat.postMessage", channel=channel, thread_ts=status.result["ts"]
        ):
            if f"describe:{job_id}:0" in action_ids(call.args.get("blocks") or []):
                return call
        return None

    message = await slack_emulator.wait_for(prompts_message, within_s=120, what="the four prompts")
    assert action_ids(message.args["blocks"]) == [f"describe:{job_id}:{n}" for n in range(4)]
    prompts = json.loads((await job_row(db, job_id))["spec"])["prompts"]
    assert len(prompts) == 4
    for prompt in prompts:
        assert prompt in message.args["text"]

    click = block_action(
        f"describe:{job_id}:1",
        channel=channel,
        message_ts=message.result["ts"],
        response_url=slack_emulator.response_url("g-describe-click"),
    )
    assert (await post_signed_form(http_bot, {"payload": json.dumps(click)})).status == 200
    story = await imagined(slack_emulator, channel, thread_ts=status.result["ts"])
    row = await job_row(db, story.job_id)
    assert row["kind"] == "imagine" and json.loads(row["spec"])["prompt"] == prompts[1]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("/imagine", "a house --control canny --image {text}", "is not an image"),
        (
            "/imagine",
            "a house --control canny --image {png} --control-weight 2.5",
            "control weight must be between",
        ),
        (
            "/imagine",
            "a house --model tiny-flux --control canny --image {png}",
            "has no ControlNet for canny",
        ),
        ("/imagine", "a house --sref {png} --sw 3", "reference weight must be between"),
        ("/blend", " ".join(["{png}"] * 6), "a blend takes 2 to 5"),
        ("/imagine", "a house --control canny", "needs --image"),
    ],
)
async def test_bad_guidance_gets_one_ephemeral_answer_and_nothing_is_queued(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, name: str, text: str, expected: str
) -> None:
    text_file = slack_emulator.add_file(b"hello", "notes.txt", "text/plain")
    text = text.replace("{text}", f"<{text_file['permalink']}>").replace("{png}", link(slack_emulator, 0))
    before = await db.fetchval("SELECT count(*) FROM jobs")
    reply_name = f"g-bad-{abs(hash(text))}"
    await command(http_bot, slack_emulator, name, text, "CGUIDEDBAD", reply_name)
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses(reply_name)))[0]
    assert reply.args["response_type"] == "ephemeral" and expected in reply.args["text"], reply.args
    assert await db.fetchval("SELECT count(*) FROM jobs") == before
