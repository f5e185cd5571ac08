"""Inpainting from Slack: the "Inpaint…" shortcut opens a modal (views.open) whose submission inpaints the
message's image into its thread; field mistakes come back on the modal; `/inpaint` does the same from links."""

from __future__ import annotations

import asyncio
import io
import json

import asyncpg
import numpy as np
from PIL import Image as PILImage

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    imagined,
    job_row,
    message_shortcut,
    png_size,
    post_signed_form,
    slash_command,
    view_submission,
)


def a_mask(width: int = 64, height: int = 64) -> bytes:
    """Black, with a white square in the middle: repaint the centre only."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


async def open_modal(http_bot: str, emulator: SlackEmulator, message: dict, channel: str) -> dict:
    """Use the "Inpaint…" shortcut on `message`; return the modal the app opened."""
    shortcut = message_shortcut(
        "inpaint", message, channel=channel, response_url=emulator.response_url(f"inpaint-{message['ts']}")
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})
    assert answer.status == 200 and answer.seconds < 3
    call = await emulator.wait_for(
        lambda: emulator.api_calls("views.open", trigger_id=shortcut["trigger_id"]), what="views.open"
    )
    return call[0].result["view"]


def choose(mode: str, prompt: str = "", mask: list[dict] | None = None, extend: str | None = None) -> dict:
    return {
        "mode": {"selected_option": {"value": mode, "text": {"type": "plain_text", "text": mode}}},
        "prompt": {"value": prompt or None},
        "mask": {"files": mask or []},
        "extend": {"value": extend},
    }


async def test_the_inpaint_shortcut_opens_a_modal_whose_submission_inpaints_into_the_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CINPAINT", "1700000300.000100"
    image = slack_emulator.add_file(a_png(64, 64), "room.png", "image/png")
    mask = slack_emulator.add_file(a_mask(), "room-mask.png", "image/png")
    view = await open_modal(http_bot, slack_emulator, {"ts": ts, "files": [image, mask]}, channel)
    assert view["callback_id"] == "inpaint_modal"
    elements = {b["block_id"]: b["element"]["type"] for b in view["blocks"] if b["type"] == "input"}
    assert elements == {
        "mode": "static_select",
        "prompt": "plain_text_input",
        "mask": "file_input",
        "extend": "plain_text_input",
    }
    assert "room-mask.png" in json.dumps(view["blocks"])  # the modal says which image is the mask

    submitted = await post_signed_form(
        http_bot, {"payload": json.dumps(view_submission(view, choose("insertion", "a red ball"), user="U8"))}
    )
    assert submitted.status == 200 and submitted.text == "" and submitted.seconds < 3  # the modal closes
    story = await imagined(slack_emulator, channel, thread_ts=ts)
    assert [png_size(f) for f in story.files] == [(64, 64)]
    row = await job_row(db, story.job_id)
    spec = json.loads(row["spec"])
    assert (row["kind"], row["status"], spec["mode"], spec["prompt"]) == (
        "inpaint",
        "succeeded",
        "insertion",
        "a red ball",
    )
    assert spec["image"].startswith("inputs/") and spec["mask"].startswith("inputs/")
    assert spec["image"] != spec["mask"]
    assert slack_emulator.downloads(mask["id"])  # the message's second image was the mask


async def test_a_mask_chosen_in_the_modal_is_used_for_a_removal(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CINPAINTFILE", "1700000310.000100"
    image = slack_emulator.add_file(a_png(64, 64), "desk.png", "image/png")
    uploaded = slack_emulator.add_file(a_mask(), "chosen-mask.png", "image/png")
    view = await open_modal(http_bot, slack_emulator, {"ts": ts, "files": [image]}, channel)
    chosen = [
        {"id": uploaded["id"], "name": uploaded["name"], "mimetype": "image/png", "size": uploaded["size"]}
    ]
    payload = view_submission(view, choose("removal", mask=chosen))
    assert (await post_signed_form(http_bot, {"payload": json.dumps(payload)})).text == ""
    story = await imagined(slack_emulator, channel, thread_ts=ts)
    spec = json.loads((await job_row(db, story.job_id))["spec"])
    assert spec["mode"] == "removal" and spec["mask"].startswith("inputs/")
    assert slack_emulator.api_calls("files.info", file=uploaded["id"]) and slack_emulator.downloads(
        uploaded["id"]
    )


async def test_mistakes_in_the_modal_come_back_on_its_fields_and_enqueue_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CINPAINTBAD", "1700000320.000100"
    image = slack_emulator.add_file(a_png(64, 64), "wall.png", "image/png")
    notes = slack_emulator.add_file(b"not a mask", "notes.txt", "text/plain")
    view = await open_modal(http_bot, slack_emulator, {"ts": ts, "files": [image]}, channel)
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    cases = [
        (choose("removal"), {"mask": "Removal needs a mask"}),
        (choose("insertion"), {"mask": "Insertion needs a mask", "prompt": "Insertion needs a prompt"}),
        (
            choose("removal", mask=[{"id": notes["id"], "name": "notes.txt", "mimetype": "text/plain"}]),
            {"mask": "notes.txt is not an image"},
        ),
        (choose("outpaint", extend="left=lots"), {"extend": "whole number of pixels"}),
        (
            choose("removal", extend="left=8"),
            {"mask": "Removal needs a mask", "extend": "extending is for outpaint only"},
        ),
    ]
    for values, expected in cases:
        answer = await post_signed_form(http_bot, {"payload": json.dumps(view_submission(view, values))})
        assert answer.status == 200 and answer.seconds < 3
        body = json.loads(answer.text)
        assert body["response_action"] == "errors" and set(body["errors"]) == set(expected), body
        for field, words in expected.items():
            assert words in body["errors"][field], body
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)
    assert not slack_emulator.downloads(image["id"])

    # A message without an image gets no modal, but the reason.
    shortcut = message_shortcut(
        "inpaint",
        {"ts": "1700000320.000200"},
        channel=channel,
        response_url=slack_emulator.response_url("inp-no"),
    )
    assert (await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})).status == 200
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("inp-no")))[0]
    assert reply.args["response_type"] == "ephemeral" and "That message has no file" in reply.args["text"]
    assert not slack_emulator.api_calls("views.open", trigger_id=shortcut["trigger_id"])


async def inpaint_command(http_bot: str, emulator: SlackEmulator, text: str, channel: str, name: str) -> None:
    fields = slash_command(text, channel=channel, response_url=emulator.response_url(name))
    fields["command"] = "/inpaint"
    answer = await post_signed_form(http_bot, fields)
    assert answer.status == 200 and answer.seconds < 3


async def test_inpaint_given_links_outpaints_into_a_new_thread_and_explains_mistakes(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSLASHINPAINT"
    image = slack_emulator.add_file(a_png(64, 64), "beach.png", "image/png")
    mask = slack_emulator.add_file(a_mask(), "beach-mask.png", "image/png")
    link, mask_link = f"<{image['permalink']}>", f"<{mask['permalink']}>"
    await inpaint_command(
        http_bot, slack_emulator, f"{link} outpaint --extend right=32 more sea --seed 5", channel, "inp-out"
    )
    story = await imagined(slack_emulator, channel)
    assert [png_size(f) for f in story.files] == [(96, 64)]
    spec = json.loads((await job_row(db, story.job_id))["spec"])
    assert (spec["mode"], spec["prompt"], spec["seed"], spec["extend"]["right"]) == (
        "outpaint",
        "more sea",
        5,
        32,
    )

    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    for n, (text, expected) in enumerate(
        [
            (f"{link} insertion a lamp", "insertion needs --mask"),
            (f"{link} paint a lamp", "the mode must be one of insertion, removal, outpaint"),
            (f"{link} removal --mask {mask_link} --ar 16:9", "/inpaint does not take aspect"),
            (f"{link} outpaint --mask {mask_link}", "leave --mask out"),
            ("https://example.com/x.png removal --mask x", "not a link to a file in Slack"),
            (link, "Usage: `/inpaint"),
        ]
    ):
        await inpaint_command(http_bot, slack_emulator, text, channel, f"inp-bad-{n}")
        reply = (await slack_emulator.wait_for(lambda n=n: slack_emulator.responses(f"inp-bad-{n}")))[0]
        assert reply.args["response_type"] == "ephemeral" and expected in reply.args["text"], reply.args
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
