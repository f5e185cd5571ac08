"""The "Replay" message shortcut (issue 17): an image Atelier posted in Slack is made again, from the recipe it
carries, in that message's thread, for the workspace asking; an image without a recipe or with an edited one
gets an ephemeral answer naming the problem, and nothing is enqueued. HTTP mode, signed."""

from __future__ import annotations

import json

import asyncpg
from PIL import Image

from engine.output import png_bytes
from tests.provenance.support import edit_recipe
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    assert_shortcut_refused,
    imagined,
    job_row,
    message_shortcut,
    post_signed_form,
    slash_command,
)
from tests.support import replayed_content


async def _imagined_png(http_bot: str, slack_emulator: SlackEmulator, channel: str, prompt: str) -> bytes:
    """The one PNG an `/imagine PROMPT --model tiny` in `channel` posted."""
    url = slack_emulator.response_url(f"{channel}-imagine")
    command = slash_command(f"{prompt} --model tiny", channel=channel, response_url=url)
    assert (await post_signed_form(http_bot, command)).status == 200
    [png] = (await imagined(slack_emulator, channel)).files
    return png


async def test_the_replay_shortcut_makes_the_same_pixels_in_the_messages_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CREPLAY"
    original = await _imagined_png(
        http_bot, slack_emulator, channel, "a kettle on a stove --seed 12 --steps 3"
    )

    ts = "1700000900.000100"
    file = slack_emulator.add_file(original, "kettle.png", "image/png")
    shortcut = message_shortcut(
        "replay",
        {"ts": ts, "files": [file]},
        channel=channel,
        response_url=slack_emulator.response_url("replay"),
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})
    assert answer.status == 200 and answer.seconds < 3
    again = await imagined(slack_emulator, channel, thread_ts=ts)
    assert [replayed_content(f) for f in again.files] == [replayed_content(original)]
    row = await job_row(db, again.job_id)
    assert row["kind"] == "imagine" and json.loads(row["spec"])["seed"] == 12
    assert not slack_emulator.responses("replay")  # no refusal


async def test_replay_of_an_image_without_a_valid_recipe_is_refused_and_enqueues_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CREPLAYBAD"
    original = await _imagined_png(http_bot, slack_emulator, channel, "a teapot --seed 3 --steps 2")
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    cases = [
        (png_bytes(Image.new("RGB", (64, 64), "olive")), "has no Atelier recipe"),
        (edit_recipe(original, lambda r: r | {"spec": r["spec"] | {"seed": 99}}), "changed after signing"),
    ]
    for n, (data, expected) in enumerate(cases):
        file = slack_emulator.add_file(data, "in.png", "image/png")
        await assert_shortcut_refused(
            http_bot,
            slack_emulator,
            "replay",
            {"ts": f"1700000950.00010{n}", "files": [file]},
            channel=channel,
            name=f"replay-bad-{n}",
            expected=expected,
        )
    # Each refusal came from building the spec, which precedes any record or enqueue.
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
