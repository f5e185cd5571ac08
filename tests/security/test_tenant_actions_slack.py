"""Slack: a button or reaction acts only on a job of the clicker's own workspace (issue 11, item 3).

A member of team T2 (in a Slack Connect channel, or with a payload made by hand) clicking Reroll, U, V, Enhance
faces or Cancel under a job of T1 gets "That button belongs to another workspace" and nothing else happens: no
job row, nothing queued, nothing posted or edited in the job's channel. A click naming an image the safety filter
withheld is refused too. The real `atelier slack` (HTTP mode) and worker against the Slack emulator.
"""

from __future__ import annotations

import json
import time

import asyncpg
import redis.asyncio as aioredis

from tests.slack.emulator import SlackEmulator
from tests.slack.rig import REDIS_DB
from tests.slack.slack_requests import (
    block_action,
    event_callback,
    imagined,
    post_signed_form,
    post_signed_json,
    slash_command,
    status_message,
)
from tests.support import redis_url

OWNER, OTHER = "TSECOWN", "TSECOTHER"
FOREIGN = "That button belongs to another workspace"


def _from_team(payload: dict, team: str, user: str) -> dict:
    """`payload` as Slack sends it for `user` of `team`."""
    payload["team"] = {"id": team, "domain": team.lower()}
    payload["user"] = {**payload["user"], "id": user, "team_id": team}
    return payload


async def _queue_state(db: asyncpg.Connection) -> tuple[set[str], set[bytes]]:
    """Every job row's id, and the rig's queued arq jobs (a job's `arq:job:<id>` lives until it has run)."""
    ids = {row["id"] for row in await db.fetch("SELECT id FROM jobs")}
    client = aioredis.Redis.from_url(redis_url(REDIS_DB))
    try:
        keys = {key async for key in client.scan_iter(match="arq:job:*")}
    finally:
        await client.aclose()
    return ids, keys


def _touched(emulator: SlackEmulator, channel: str, since: float) -> list:
    """Web API calls that posted, edited or uploaded into `channel` at or after `since`."""
    return [
        c
        for c in emulator.api_calls()
        if c.at >= since
        and c.method != "chat.postEphemeral"
        and channel in (c.args.get("channel"), c.args.get("channel_id"))
    ]


async def test_buttons_and_reactions_from_another_workspace_are_refused_and_nothing_is_posted(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSECSHARED"  # a shared channel: members of both workspaces are in it
    command = slash_command(
        "a lighthouse --steps 2 --seed 4",
        channel=channel,
        team=OWNER,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, command)).status == 200
    job = await imagined(slack_emulator, channel)
    result_ts = job.result.result["ts"]
    before = await _queue_state(db)
    clicked_at = time.monotonic()

    for action in ("reroll", "upscale", "variations", "faces", "cancel"):
        name = f"sec-{action}-{job.job_id}"
        click = block_action(
            f"{action}:{job.job_id}:0",
            channel=channel,
            message_ts=result_ts,
            response_url=slack_emulator.response_url(name),
        )
        answer = await post_signed_form(http_bot, {"payload": json.dumps(_from_team(click, OTHER, "UOTHER"))})
        assert answer.status == 200 and answer.seconds < 3
        reply = (await slack_emulator.wait_for(lambda n=name: slack_emulator.responses(n), what=name))[0]
        assert reply.args["response_type"] == "ephemeral", reply.args
        assert FOREIGN in reply.args["text"], (action, reply.args["text"])

    # A reaction of theirs on the results: told to them alone, and nothing done.
    event = {
        "type": "reaction_added",
        "user": "UOTHER",
        "reaction": "mag",
        "item_user": "UBOT",
        "item": {"type": "message", "channel": channel, "ts": result_ts},
        "event_ts": str(time.time()),
    }
    answer = await post_signed_json(
        http_bot, event_callback(event, event_id=f"EvSec{time.time_ns()}", team=OTHER)
    )
    assert answer.status == 200

    def told() -> list:
        calls = slack_emulator.api_calls("chat.postEphemeral", channel=channel, user="UOTHER")
        return [c for c in calls if c.at >= clicked_at]

    [ephemeral] = await slack_emulator.wait_for(told, what="the answer to the reaction")
    assert "belongs to another workspace" in ephemeral.args["text"], ephemeral.args

    # Every refusal has arrived, and each was the last thing its listener did: nothing else happened.
    assert await _queue_state(db) == before
    assert _touched(slack_emulator, channel, clicked_at) == []
    row = await db.fetchrow("SELECT status FROM jobs WHERE id = $1", job.job_id)
    assert row["status"] == "succeeded"  # the cancel did not reach it either


async def test_a_button_naming_a_withheld_image_is_refused(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CSECWITHHELD"
    command = slash_command(
        "a statue --model tiny-strict --steps 2 --seed 3",
        channel=channel,
        team=OWNER,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, command)).status == 200
    status = await status_message(slack_emulator, channel)
    status_ts = status.result["ts"]
    job_id = status.args["blocks"][-1]["elements"][0]["action_id"].split(":")[1]

    def done() -> list | None:
        updates = slack_emulator.api_calls("chat.update", channel=channel, ts=status_ts)
        return updates if updates and "Done" in updates[-1].args["text"] else None

    await slack_emulator.wait_for(done, within_s=180, what="the final status")
    assert await db.fetchval("SELECT bool_and(flagged) FROM images WHERE job_id = $1", job_id)
    before = await _queue_state(db)
    clicked_at = time.monotonic()

    for action in (
        "upscale",
        "variations",
        "faces",
    ):  # buttons it never had, made by hand in its own workspace
        name = f"sec-withheld-{action}-{job_id}"
        click = block_action(
            f"{action}:{job_id}:0",
            channel=channel,
            message_ts=status_ts,
            response_url=slack_emulator.response_url(name),
        )
        answer = await post_signed_form(http_bot, {"payload": json.dumps(_from_team(click, OWNER, "U1"))})
        assert answer.status == 200
        reply = (await slack_emulator.wait_for(lambda n=name: slack_emulator.responses(n), what=name))[0]
        assert "withheld by this workspace's safety filter" in reply.args["text"], reply.args

    assert await _queue_state(db) == before
    assert _touched(slack_emulator, channel, clicked_at) == []
