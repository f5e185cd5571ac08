"""The safety filter in Slack: while a workspace's filter is on (the default) images the model's safety checker
flags are withheld (Slack has no age-restricted channels); `/atelier safety off` posts them like any other.
`tiny-strict` is the tiny model with a checker that flags every image."""

from __future__ import annotations

import json

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import imagined, job_row, post_signed_form, slash_command, status_message

TEAM = "TSAFE"


async def test_flagged_images_are_withheld_until_an_admin_turns_the_filter_off(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSAFEON"
    fields = slash_command(
        "a fox --model tiny-strict --steps 2 --n 2",
        channel=channel,
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    status = await status_message(slack_emulator, channel)
    status_ts = status.result["ts"]
    job_id = status.args["blocks"][-1]["elements"][0]["action_id"].split(":")[1]

    def done() -> list | None:
        updates = slack_emulator.api_calls("chat.update", channel=channel, ts=status_ts)
        return updates if updates and "Done" in updates[-1].args["text"] else None

    final = (await slack_emulator.wait_for(done, within_s=180, what="the final status"))[-1].args["text"]
    assert "Done: 2 images withheld by the safety filter" in final, final
    row = await job_row(db, job_id)
    assert row["status"] == "succeeded"
    assert await db.fetchval("SELECT count(*) FROM images WHERE job_id = $1 AND flagged", job_id) == 2
    # Nothing was uploaded; the thread says why, with no U/V buttons for the withheld images.
    assert not slack_emulator.api_calls("files.completeUploadExternal", channel_id=channel)
    [note] = [
        c
        for c in slack_emulator.api_calls("chat.postMessage", channel=channel, thread_ts=status_ts)
        if "withheld" in json.dumps(c.args.get("blocks"))
    ]
    assert "/atelier safety off" in json.dumps(note.args["blocks"])
    codes = [e["action_id"] for b in note.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert codes == [f"reroll:{job_id}:0"]

    off = slash_command(
        "safety off",
        channel=channel,
        team=TEAM,
        user="UADMIN",
        response_url=slack_emulator.response_url("safe-off"),
    )
    off["command"] = "/atelier"
    assert (await post_signed_form(http_bot, off)).status == 200
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("safe-off")))[0]
    assert "safety filter off" in reply.args["text"], reply.args

    fields = slash_command(
        "a fox --model tiny-strict --steps 2",
        channel="CSAFEOFF",
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, "CSAFEOFF")
    assert len(story.files) == 1  # flagged, and posted: this workspace turned the filter off
    assert await db.fetchval("SELECT bool_and(flagged) FROM images WHERE job_id = $1", story.job_id)
