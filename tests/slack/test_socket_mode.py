"""`atelier slack` in Socket Mode: the app opens the WebSocket it gets from `apps.connections.open` (on the
emulator, through ATELIER_SLACK_API_BASE); requests arrive as envelopes, and each must be acknowledged on the
socket within 3 s."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import asyncpg

from tests.slack.conftest import APP_TOKEN, Process, logged
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    action_ids,
    event_callback,
    imagined,
    job_row,
    message_shortcut,
    png_size,
    slash_command,
    status_message,
    view_submission,
)


async def test_imagine_over_socket_mode_acks_threads_progress_and_uploads(
    socket_bot: Process, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSOCKIMAGINE"
    opened = slack_emulator.api_calls("apps.connections.open")
    assert opened and opened[0].token == APP_TOKEN  # the WebSocket URL came from the configured API base
    # The first status edit is rate limited: the replier's client waits Retry-After and sends it again; that
    # retry fails outright: the replier skips it and goes on with the next state.
    slack_emulator.fail_next("chat.update", status=429, retry_after=1, when={"channel": channel})
    slack_emulator.fail_next(
        "chat.update", status=200, error="internal_error", retry_after=None, when={"channel": channel}
    )
    # Progress is edited only once the status message exists, and the app (starved of CPU by the worker) may
    # take seconds to post it: a job already running keeps this one queued until its status message is there.
    ahead = slash_command(
        "a job ahead --size 128x128 --hires 1 --steps 30",
        channel="CSOCKAHEAD",
        response_url=slack_emulator.response_url(),
    )
    await slack_emulator.send_envelope("slash_commands", ahead)
    await status_message(slack_emulator, "CSOCKAHEAD")
    fields = slash_command(
        "a harbour at night --size 512x512 --hires 1 --steps 50 --n 2 --seed 3",
        channel=channel,
        response_url=slack_emulator.response_url("socket-imagine"),
    )
    envelope_id, sent_at = await slack_emulator.send_envelope("slash_commands", fields)
    ack = await slack_emulator.wait_for(lambda: slack_emulator.socket_acks.get(envelope_id), what="the ack")
    assert ack.at - sent_at < 3

    story = await imagined(slack_emulator, channel)
    limited, retried = slack_emulator.api_calls("chat.update", failed=True, ts=story.status_ts)
    assert (limited.result["status"], retried.result["error"]) == (429, "internal_error")
    # The first edit showed progress; how many more progress edits follow depends on how long the job runs
    # after the 3 s those two attempts and the next 2 s slot take (on a fast machine, none: only Done).
    assert "step" in limited.args["text"], limited.args["text"]
    assert retried.args["blocks"] == limited.args["blocks"] and retried.at - limited.at >= 0.9
    attempts = [retried.at, *(update.at for update in story.updates)]
    assert min(b - a for a, b in itertools.pairwise(attempts)) >= 1.9, attempts
    assert "Done" in story.updates[-1].args["text"]
    assert [png_size(f) for f in story.files] == [(512, 512)] * 2
    assert story.files[0] != story.files[1]  # seeds 3 and 4
    labels = [
        e["text"]["text"]
        for b in story.result.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert labels[:4] == ["U1", "U2", "V1", "V2"] and "Faces 2" in labels
    assert (await job_row(db, story.job_id))["status"] == "succeeded"


async def test_a_reaction_redelivered_three_times_upscales_once(
    socket_bot: Process, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    # :mag: on a results message upscales its image 4x into the same thread: one job and one upload, however
    # many times Slack delivers the event.
    channel = "CSOCKREACT"
    fields = slash_command("a lantern --steps 3", channel=channel, response_url=slack_emulator.response_url())
    await slack_emulator.send_envelope("slash_commands", fields)
    story = await imagined(slack_emulator, channel)
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")

    reaction = {
        "type": "reaction_added",
        "user": "U4",
        "reaction": "mag",
        "item_user": "UBOT",
        "item": {"type": "message", "channel": channel, "ts": story.result.result["ts"]},
        "event_ts": "1700000001.000200",
    }
    payload = event_callback(reaction, event_id="Ev0REACTION1")
    reacted_at = time.monotonic()
    for attempt in range(3):
        envelope_id, sent_at = await slack_emulator.send_envelope(
            "events_api", payload, retry_attempt=attempt
        )
        ack = await slack_emulator.wait_for(
            lambda e=envelope_id: slack_emulator.socket_acks.get(e), what="the ack"
        )
        assert ack.at - sent_at < 3
    upscaled = await imagined(slack_emulator, channel, thread_ts=story.status_ts, after=reacted_at)
    assert [png_size(f) for f in upscaled.files] == [(256, 256)]  # 64x64, four times
    row = await job_row(db, upscaled.job_id)
    assert (row["kind"], row["status"]) == ("upscale", "succeeded")
    assert "<@U4>" in json.dumps(upscaled.status.args["blocks"])  # the person who reacted asked for it
    # Both retries were dropped before any listener (logged before they were acked): no second job comes.
    await logged(socket_bot, "slack event Ev0REACTION1 redelivered", times=2)
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before + 1
    assert len(slack_emulator.api_calls("files.completeUploadExternal", channel_id=channel)) == 2
    # An upscaled image offers variations and faces, not another U.
    codes = action_ids(upscaled.result.args["blocks"])
    assert not any(c.startswith("upscale:") for c in codes) and f"faces:{upscaled.job_id}:0" in codes
    # A reaction that means nothing to Atelier is ignored.
    other = event_callback({**reaction, "reaction": "tada"}, event_id="Ev0REACTION2")
    envelope_id, _ = await slack_emulator.send_envelope("events_api", other)
    await slack_emulator.wait_for(lambda: slack_emulator.socket_acks.get(envelope_id), what="the ack")
    await asyncio.sleep(0.5)  # the listener runs after the ack and says nothing when it ignores a reaction
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before + 1
    assert not slack_emulator.api_calls("chat.postEphemeral", channel=channel)


async def test_the_inpaint_modal_over_socket_mode_opens_and_answers_field_errors_in_the_ack(
    socket_bot: Process, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CSOCKINPAINT", "1700000500.000100"
    image = slack_emulator.add_file(a_png(64, 64), "sock.png", "image/png")
    shortcut = message_shortcut(
        "inpaint", {"ts": ts, "files": [image]}, channel=channel, response_url=slack_emulator.response_url()
    )
    await slack_emulator.send_envelope("interactive", shortcut)
    [opened] = await slack_emulator.wait_for(
        lambda: slack_emulator.api_calls("views.open", trigger_id=shortcut["trigger_id"]), what="views.open"
    )
    removal = {"mode": {"selected_option": {"value": "removal"}}, "mask": {"files": []}}
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    envelope_id, sent_at = await slack_emulator.send_envelope(
        "interactive", view_submission(opened.result["view"], removal)
    )
    ack = await slack_emulator.wait_for(lambda: slack_emulator.socket_acks.get(envelope_id), what="the ack")
    assert ack.at - sent_at < 3
    assert ack.args["payload"]["response_action"] == "errors", ack.args
    assert "Removal needs a mask" in ack.args["payload"]["errors"]["mask"]
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
