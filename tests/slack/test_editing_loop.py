"""The editing loop in Slack, against the emulator with the real bolt app (HTTP mode), worker, Redis, PostgreSQL
and tiny models: :mag: on the image message of a result and on a member's uploaded image each post one upscale;
the editing loop's buttons under a single image; `atelier slack --help`."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from jobs.editing import LOOP, LOOP_ACTIONS
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    action_ids,
    block_action,
    delivered_row,
    event_callback,
    imagined,
    png_size,
    post_signed_form,
    post_signed_json,
    slash_command,
    view_submission,
)
from tests.support import run_atelier

TEAM, CHANNEL = "TLOOP", "CLOOP"
BUTTONS = "CLOOPBUTTONS"  # in the default team of `block_action` and `view_submission`
MEMBER = "ULOOP"  # whose settings these tests change: no other test's member


async def react(http_bot: str, message: dict, event_id: str, *, item_user: str) -> None:
    event = {
        "type": "reaction_added",
        "user": "U7",
        "reaction": "mag",
        "item_user": item_user,
        "item": {"type": "message", "channel": CHANNEL, "ts": message["ts"]},
        "event_ts": f"{time.time():.6f}",
    }
    answer = await post_signed_json(http_bot, event_callback(event, event_id=event_id, team=TEAM))
    assert answer.status == 200 and answer.seconds < 3


async def upscales(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT j.id, j.spec FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
        "WHERE t.platform = 'slack' AND t.external_id = $1 AND j.kind = 'upscale' ORDER BY j.created_at",
        TEAM,
    )


async def test_mag_on_a_result_image_and_on_a_members_upload_each_post_one_upscale(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    fields = slash_command(
        "a lighthouse --steps 2 --seed 3",
        channel=CHANNEL,
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, CHANNEL)
    image_messages = [
        m
        for (channel, _), m in slack_emulator.messages.items()
        if channel == CHANNEL and m.get("files") and m.get("thread_ts") == story.status_ts
    ]
    assert len(image_messages) == 1  # the file share of the result's one image

    reacted_at = time.monotonic()
    await react(http_bot, image_messages[0], "EvLOOP1", item_user=slack_emulator.bot_user_id)
    upscaled = await imagined(slack_emulator, CHANNEL, thread_ts=story.status_ts, after=reacted_at)
    assert (await delivered_row(db, upscaled.job_id))["kind"] == "upscale"
    assert png_size(upscaled.files[0]) == (256, 256)  # the 64² result, 4× larger
    [first] = await upscales(db)
    assert first["id"] == upscaled.job_id and json.loads(first["spec"])["parent"] == story.job_id

    member = slack_emulator.post_message(
        CHANNEL, "U7", [slack_emulator.add_file(a_png(64, 80), "cat.png", "image/png")]
    )
    reacted_at = time.monotonic()
    await react(http_bot, member, "EvLOOP2", item_user="U7")
    theirs = await imagined(slack_emulator, CHANNEL, thread_ts=member["ts"], after=reacted_at)
    assert (await delivered_row(db, theirs.job_id))["kind"] == "upscale"
    assert png_size(theirs.files[0]) == (256, 320)
    rows = await upscales(db)
    assert [row["id"] for row in rows] == [upscaled.job_id, theirs.job_id]  # one each
    assert json.loads(rows[1]["spec"])["parent"] is None  # a member's upload has no job behind it
    assert slack_emulator.downloads(member["files"][0]["id"])  # read through the Web API's file URL


def test_atelier_slack_help_prints_the_set_up_steps(tmp_path) -> None:
    result = run_atelier("slack", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for step in ("slack-manifest.yml", "Socket Mode", "ATELIER_SLACK_BOT_TOKEN", "/invite"):
        assert step in result.stdout, step


async def slash(http_bot: str, emulator: SlackEmulator, text: str, *, command: str = "/imagine") -> dict:
    fields = slash_command(text, channel=BUTTONS, response_url=emulator.response_url(), user=MEMBER)
    fields["command"] = command
    assert (await post_signed_form(http_bot, fields)).status == 200
    return fields


async def click(http_bot: str, emulator: SlackEmulator, action_id: str, message_ts: str) -> None:
    payload = block_action(
        action_id, channel=BUTTONS, message_ts=message_ts, response_url=emulator.response_url(), user=MEMBER
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(payload)})
    assert answer.status == 200 and answer.seconds < 3


async def opened_view(emulator: SlackEmulator, callback_id: str, after: int) -> dict:
    def probe() -> dict | None:
        found = [v for v in list(emulator.views.values())[after:] if v.get("callback_id") == callback_id]
        return found[-1] if found else None

    return await emulator.wait_for(probe, what=f"the {callback_id} modal")


async def setting_is(db: asyncpg.Connection, field: str, value: bool, within: float = 10) -> None:
    """Wait (bounded) until MEMBER's stored `field` is `value`: the modal's submission is stored after its ack."""
    deadline = time.monotonic() + within
    query = f"SELECT {field} FROM member_settings WHERE user_external_id = '{MEMBER}'"
    while await db.fetchval(query) is not value:
        assert time.monotonic() < deadline, f"{field} never became {value}"
        await asyncio.sleep(0.05)


async def submit_view(http_bot: str, view: dict, values: dict[str, dict]) -> None:
    payload = view_submission(view, values, user=MEMBER)
    answer = await post_signed_form(http_bot, {"payload": json.dumps(payload)})
    assert answer.status == 200 and answer.seconds < 3


async def test_loop_buttons_zoom_and_remix_and_private_mode(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    await slash(http_bot, slack_emulator, "a windmill --steps 2 --seed 6")
    story = await imagined(slack_emulator, BUTTONS)
    codes = action_ids(story.result.args["blocks"])
    assert [c.split(":")[0] for c in codes if c.split(":")[0] in LOOP] == [a.name for a in LOOP_ACTIONS]

    clicked_at = time.monotonic()
    await click(http_bot, slack_emulator, f"zoom_2:{story.job_id}:0", story.result.result["ts"])
    zoomed = await imagined(slack_emulator, BUTTONS, thread_ts=story.status_ts, after=clicked_at)
    assert png_size(zoomed.files[0]) == (128, 128)
    spec = json.loads((await delivered_row(db, zoomed.job_id))["spec"])
    assert (spec["kind"], spec["parent"], spec["seed"]) == ("inpaint", story.job_id, 6)

    # Remix on (from the settings modal): Vary opens a modal; the submitted prompt is the one the job runs with.
    views = len(slack_emulator.views)
    await slash(http_bot, slack_emulator, "settings", command="/atelier")
    settings = await opened_view(slack_emulator, "atelier_settings", views)
    await submit_view(http_bot, settings, {"remix": {"selected_option": {"value": "on"}}})
    await setting_is(db, "remix", True)
    views = len(slack_emulator.views)
    await click(http_bot, slack_emulator, f"vary_subtle:{story.job_id}:0", story.result.result["ts"])
    remix = await opened_view(slack_emulator, "atelier_remix", views)
    clicked_at = time.monotonic()
    await submit_view(http_bot, remix, {"prompt": {"value": "a windmill in snow"}, "extra": {"value": "0.5"}})
    varied = await imagined(slack_emulator, BUTTONS, thread_ts=story.status_ts, after=clicked_at)
    spec = json.loads((await delivered_row(db, varied.job_id))["spec"])
    assert (spec["prompt"], spec["strength"], spec["parent"]) == ("a windmill in snow", 0.5, story.job_id)
    views = len(slack_emulator.views)
    await click(http_bot, slack_emulator, f"reroll:{story.job_id}:0", story.result.result["ts"])
    remix = await opened_view(slack_emulator, "atelier_remix", views)
    clicked_at = time.monotonic()
    await submit_view(http_bot, remix, {"prompt": {"value": "a windmill at dusk"}})
    rerolled = await imagined(slack_emulator, BUTTONS, thread_ts=story.status_ts, after=clicked_at)
    spec = json.loads((await delivered_row(db, rerolled.job_id))["spec"])
    assert (spec["kind"], spec["prompt"]) == ("imagine", "a windmill at dusk") and spec["seed"] != 6
    views = len(slack_emulator.views)
    await click(http_bot, slack_emulator, f"variations:{story.job_id}:0", story.result.result["ts"])
    remix = await opened_view(slack_emulator, "atelier_remix", views)
    clicked_at = time.monotonic()
    await submit_view(http_bot, remix, {"prompt": {"value": "a windmill, v"}, "extra": {"value": "0.3"}})
    varied = await imagined(slack_emulator, BUTTONS, thread_ts=story.status_ts, after=clicked_at)
    spec = json.loads((await delivered_row(db, varied.job_id))["spec"])
    assert (spec["kind"], spec["prompt"], spec["strength"]) == ("vary", "a windmill, v", 0.3)

    # Private mode: the next /imagine goes to the member's direct messages with the app, not the channel.
    views = len(slack_emulator.views)
    await slash(http_bot, slack_emulator, "settings", command="/atelier")
    settings = await opened_view(slack_emulator, "atelier_settings", views)
    await submit_view(
        http_bot,
        settings,
        {"remix": {"selected_option": {"value": "off"}}, "private": {"selected_option": {"value": "on"}}},
    )
    await setting_is(db, "private", True)
    in_channel = len(slack_emulator.api_calls("chat.postMessage", channel=BUTTONS))
    await slash(http_bot, slack_emulator, "a hidden lake --steps 2")
    private = await imagined(slack_emulator, "D" + MEMBER)
    assert (await delivered_row(db, private.job_id))["status"] == "succeeded"
    assert len(slack_emulator.api_calls("chat.postMessage", channel=BUTTONS)) == in_channel
    assert not slack_emulator.api_calls("files.completeUploadExternal", channel_id=BUTTONS, thread_ts=None)
