"""Message shortcuts ("Upscale", "Enhance faces") on a message someone posted with an image: the app downloads
the file from Slack with the bot token, and the result goes into that message's thread. HTTP mode, signed."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tests.slack.conftest import BOT_TOKEN
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    assert_shortcut_refused,
    imagined,
    job_row,
    message_shortcut,
    png_size,
    post_signed_form,
    slash_command,
)


async def test_the_upscale_shortcut_posts_the_4x_image_in_the_messages_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CSHORTUP", "1700000100.000100"
    file = slack_emulator.add_file(a_png(), "kettle.png", "image/png")
    shortcut = message_shortcut(
        "upscale",
        {"ts": ts, "files": [file]},
        channel=channel,
        response_url=slack_emulator.response_url("short-up"),
        user="U6",
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})
    assert answer.status == 200 and answer.seconds < 3

    status = asyncio.ensure_future(imagined(slack_emulator, channel, thread_ts=ts))
    complaint = asyncio.ensure_future(slack_emulator.wait_for(lambda: slack_emulator.responses("short-up")))
    await asyncio.wait([status, complaint], return_when=asyncio.FIRST_COMPLETED)
    assert not complaint.done(), complaint.result()[0].args  # the app refused: say why
    complaint.cancel()
    story = await status
    assert [png_size(f) for f in story.files] == [(256, 320)]  # 64x80, four times
    [download] = slack_emulator.downloads(file["id"])
    assert download.token == BOT_TOKEN
    row = await job_row(db, story.job_id)
    assert (row["kind"], row["status"]) == ("upscale", "succeeded")
    stored = json.loads(row["spec"])["image"]
    assert stored.startswith("inputs/") and json.loads(row["spec"])["scale"] == 4
    assert not slack_emulator.responses("short-up")


async def test_files_that_are_not_usable_images_get_an_ephemeral_reason_and_enqueue_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSHORTBAD"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    text_file = slack_emulator.add_file(b"shopping list", "notes.txt", "text/plain")
    fake_png = slack_emulator.add_file(b"this is not a PNG at all", "photo.png", "image/png")
    huge = slack_emulator.add_file(b"x", "huge.png", "image/png", size=21 * 2**20)
    liar = slack_emulator.add_file(b"\x89PNG" + bytes(21 * 2**20), "liar.png", "image/png", size=1000)
    cases = [
        ("upscale", [text_file], "notes.txt is not an image (text/plain)"),
        ("upscale", [], "That message has no file"),
        ("enhance_faces", [fake_png], "photo.png is not an image Atelier can read"),
        ("upscale", [huge], "huge.png is 21.0 MiB; the limit is 20 MiB"),
        ("upscale", [liar], "liar.png is larger than the limit of 20 MiB"),
    ]
    for n, (callback_id, message_files, expected) in enumerate(cases):
        await assert_shortcut_refused(
            http_bot,
            slack_emulator,
            callback_id,
            {"ts": f"1700000200.00010{n}", "files": message_files},
            channel=channel,
            name=f"short-bad-{n}",
            expected=expected,
        )
    assert not slack_emulator.downloads(text_file["id"]) and not slack_emulator.downloads(huge["id"])
    # Each refusal above was its handler's last word: nothing it could have queued comes after it.
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)


async def test_upscale_given_a_file_permalink_posts_the_4x_image_in_a_new_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSLASHUP"
    file = slack_emulator.add_file(a_png(64, 64), "lamp.png", "image/png")
    command = slash_command(
        f"<{file['permalink']}>", channel=channel, response_url=slack_emulator.response_url("slash-up")
    )
    command["command"] = "/upscale"
    answer = await post_signed_form(http_bot, command)
    assert answer.status == 200 and answer.seconds < 3
    story = await imagined(slack_emulator, channel)
    assert [png_size(f) for f in story.files] == [(256, 256)]
    assert slack_emulator.api_calls("files.info", file=file["id"])
    assert (await job_row(db, story.job_id))["kind"] == "upscale"

    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    for n, (text, expected) in enumerate(
        [
            ("https://example.com/cat.png", "not a link to a file in Slack"),
            ("https://atelier-test.slack.com/files/U1/FNOSUCHFILE/x.png", "file_not_found"),
        ]
    ):
        bad = slash_command(text, channel=channel, response_url=slack_emulator.response_url(f"slash-bad-{n}"))
        bad["command"] = "/upscale"
        assert (await post_signed_form(http_bot, bad)).status == 200
        reply = (await slack_emulator.wait_for(lambda n=n: slack_emulator.responses(f"slash-bad-{n}")))[0]
        assert reply.args["response_type"] == "ephemeral" and expected in reply.args["text"], reply.args
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
