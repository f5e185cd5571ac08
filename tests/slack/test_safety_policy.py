"""Safety per channel and the review queue in Slack (issue 17, item 2). `tiny-sdxl-strict` is tiny SDXL with the
uniform image classifier made to flag every image. The workspace's default withholds flagged images (Slack has
no spoiler and no age-restricted channel); a channel set to `allow` by `/atelier safety --policy allow` typed in
it gets them posted. Withheld images wait in `/atelier review`: Approve uploads one into the job's thread, Delete
removes the other's row, and both are logged with the admin who clicked."""

from __future__ import annotations

import json

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    TEAM,
    block_action,
    imagined,
    post_signed_form,
    slash_command,
    status_message,
)

ALLOW, HOLD = "CPOLALLOW", "CPOLHOLD"


async def atelier(
    http_bot: str, emulator: SlackEmulator, text: str, *, channel: str, name: str, user: str = "UADMIN"
):
    fields = slash_command(
        text, channel=channel, team=TEAM, user=user, response_url=emulator.response_url(name)
    )
    fields["command"] = "/atelier"
    assert (await post_signed_form(http_bot, fields)).status == 200
    reply = (await emulator.wait_for(lambda: emulator.responses(name), what=f"the answer to {text}"))[0]
    assert reply.args["response_type"] == "ephemeral", reply.args
    return reply.args


async def click(http_bot: str, emulator: SlackEmulator, action_id: str, name: str) -> str:
    payload = block_action(
        action_id,
        channel=HOLD,
        message_ts="1.000001",
        response_url=emulator.response_url(name),
        user="UADMIN",
    )
    assert (await post_signed_form(http_bot, {"payload": json.dumps(payload)})).status == 200
    return (await emulator.wait_for(lambda: emulator.responses(name), what=action_id))[0].args["text"]


async def test_a_channel_policy_and_review_in_slack(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    answer = await atelier(http_bot, slack_emulator, "safety --policy allow", channel=ALLOW, name="pol-allow")
    assert f"safety policy of channel {ALLOW} is now allow" in answer["text"]

    fields = slash_command(
        "a fox --model tiny-sdxl-strict --steps 2",
        channel=ALLOW,
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    story = await imagined(slack_emulator, ALLOW)
    assert len(story.files) == 1
    assert await db.fetchval("SELECT bool_and(flagged) FROM images WHERE job_id = $1", story.job_id)

    fields = slash_command(
        "a fox --model tiny-sdxl-strict --steps 2 --n 2",
        channel=HOLD,
        team=TEAM,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    status = await status_message(slack_emulator, HOLD)
    status_ts = status.result["ts"]
    job_id = status.args["blocks"][-1]["elements"][0]["action_id"].split(":")[1]

    def done() -> list | None:
        updates = slack_emulator.api_calls("chat.update", channel=HOLD, ts=status_ts)
        return updates if updates and "Done" in updates[-1].args["text"] else None

    final = (await slack_emulator.wait_for(done, within_s=180, what="the final status"))[-1].args["text"]
    assert "2 images withheld" in final
    assert not slack_emulator.api_calls("files.completeUploadExternal", channel_id=HOLD)
    reviews = await db.fetch("SELECT id, image_id FROM safety_reviews WHERE job_id = $1 ORDER BY id", job_id)
    assert len(reviews) == 2

    listing = await atelier(http_bot, slack_emulator, "review", channel=HOLD, name="review-list")
    codes = [
        e["action_id"] for b in listing.get("blocks", []) if b["type"] == "actions" for e in b["elements"]
    ]
    first, second = reviews[0]["id"], reviews[1]["id"]
    assert f"atelier_review:approve:{first}" in codes and f"atelier_review:delete:{second}" in codes

    refused = await atelier(
        http_bot, slack_emulator, "review", channel=HOLD, name="review-refused", user="U1"
    )
    assert "Only this workspace's admins" in refused["text"]

    approved = await click(http_bot, slack_emulator, f"atelier_review:approve:{first}", "review-approve")
    assert f"Review #{first}: approved" in approved
    posted = slack_emulator.api_calls("files.completeUploadExternal", channel_id=HOLD, thread_ts=status_ts)
    assert len(posted) == 1 and f"review #{first}" in posted[0].args.get("initial_comment", "")

    deleted = await click(http_bot, slack_emulator, f"atelier_review:delete:{second}", "review-delete")
    assert f"Review #{second}: image deleted" in deleted
    assert await db.fetchval("SELECT count(*) FROM images WHERE id = $1", reviews[1]["image_id"]) == 0
    log = await db.fetch(
        "SELECT decision, reviewer FROM safety_reviews WHERE job_id = $1 ORDER BY id", job_id
    )
    assert [(r["decision"], r["reviewer"]) for r in log] == [("approved", "UADMIN"), ("deleted", "UADMIN")]
    shown = await atelier(http_bot, slack_emulator, "safety --review-log", channel=HOLD, name="review-log")
    assert f"#{first} image" in shown["text"] and "approved by UADMIN" in shown["text"]
