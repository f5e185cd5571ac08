"""Results whose posts fail are posted again until they go through, and appear once: the worker records each
part Slack accepted (the upload, the buttons message) and a retried delivery posts only what is missing."""

from __future__ import annotations

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    delivered_row,
    imagined,
    png_size,
    post_signed_form,
    slash_command,
    status_message,
)


async def test_failed_result_posts_are_retried_and_each_part_appears_once(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CRETRYPOSTS"
    # Completing the upload fails twice (a 500, then Slack's own error); posting the buttons fails once after
    # the upload went through: that retry must not upload the image again.
    for status in (500, 200):
        slack_emulator.fail_next(
            "files.completeUploadExternal",
            status=status,
            error="internal_error",
            retry_after=None,
            when={"channel_id": channel},
        )
    command = slash_command(
        "a lantern in the fog --size 64x64 --steps 4",
        channel=channel,
        response_url=slack_emulator.response_url(),
    )
    answer = await post_signed_form(http_bot, command)
    assert answer.status == 200, answer
    status = await imagined_status(slack_emulator, channel)
    slack_emulator.fail_next(
        "chat.postMessage",
        status=503,
        error="service_unavailable",
        retry_after=None,
        when={"channel": channel, "thread_ts": status},
    )

    story = await imagined(slack_emulator, channel)  # it checks one completed upload for the job
    assert [png_size(f) for f in story.files] == [(64, 64)]
    failed = slack_emulator.api_calls("files.completeUploadExternal", failed=True, channel_id=channel)
    assert len(failed) == 2
    results = [
        c
        for c in slack_emulator.api_calls("chat.postMessage", channel=channel, thread_ts=story.status_ts)
        if any(f":{story.job_id}:" in str(b) for b in c.args.get("blocks") or [])
    ]
    assert len(results) == 1  # the buttons, once
    row = await delivered_row(db, story.job_id)
    assert row["status"] == "succeeded"


async def imagined_status(emulator: SlackEmulator, channel: str) -> str:
    """The ts of the job's status message (its thread), as soon as the app posted it."""
    return (await status_message(emulator, channel)).result["ts"]
