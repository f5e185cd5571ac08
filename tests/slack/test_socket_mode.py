"""`atelier slack` in Socket Mode: the app opens the WebSocket it gets from `apps.connections.open` (on the
emulator, through ATELIER_SLACK_API_BASE); requests arrive as envelopes, and each must be acknowledged on the
socket within 3 s."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.slack.conftest import APP_TOKEN, Process
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import event_callback, imagined, job_row, png_size, slash_command


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
    fields = slash_command(
        "a harbour at night --size 128x128 --steps 40 --n 2 --seed 3",
        channel=channel,
        response_url=slack_emulator.response_url("socket-imagine"),
    )
    envelope_id, sent_at = await slack_emulator.send_envelope("slash_commands", fields)
    ack = await slack_emulator.wait_for(lambda: slack_emulator.socket_acks.get(envelope_id), what="the ack")
    assert ack.at - sent_at < 3

    story = await imagined(slack_emulator, channel)
    story.assert_progress_coalesced()
    limited, retried = slack_emulator.api_calls("chat.update", failed=True, ts=story.status_ts)
    assert (limited.result["status"], retried.result["error"]) == (429, "internal_error")
    assert retried.args["blocks"] == limited.args["blocks"] and retried.at - limited.at >= 0.9
    assert story.updates[0].at - retried.at >= 1.9
    assert [png_size(f) for f in story.files] == [(128, 128), (128, 128)]
    assert story.files[0] != story.files[1]  # seeds 3 and 4
    labels = [
        e["text"]["text"]
        for b in story.result.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert labels[:4] == ["U1", "U2", "V1", "V2"] and "Faces 2" in labels
    assert (await job_row(db, story.job_id))["status"] == "succeeded"


async def test_a_reaction_redelivered_three_times_is_handled_once(
    socket_bot: Process, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    # :mag: on a results message: upscaling needs issue 3's job, so for now the reacting user is told so,
    # once, however many times Slack delivers the event.
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
    for attempt in range(3):
        envelope_id, sent_at = await slack_emulator.send_envelope(
            "events_api", payload, retry_attempt=attempt
        )
        ack = await slack_emulator.wait_for(
            lambda e=envelope_id: slack_emulator.socket_acks.get(e), what="the ack"
        )
        assert ack.at - sent_at < 3
    told = await slack_emulator.wait_for(
        lambda: slack_emulator.api_calls("chat.postEphemeral", channel=channel, user="U4"),
        what="the ephemeral",
    )
    await asyncio.sleep(1.0)
    told = slack_emulator.api_calls("chat.postEphemeral", channel=channel, user="U4")
    assert len(told) == 1 and "Upscaling by reaction is not available" in told[0].args["text"]
    assert told[0].args["thread_ts"] == story.status_ts
    # A reaction that means nothing to Atelier is ignored.
    other = event_callback({**reaction, "reaction": "tada"}, event_id="Ev0REACTION2")
    await slack_emulator.send_envelope("events_api", other)
    await asyncio.sleep(0.5)
    assert len(slack_emulator.api_calls("chat.postEphemeral", channel=channel)) == 1
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
