"""The Train LoRA form re-checks admin rights when it is submitted (issue 11, item 5): a form stays open as long as
its user likes, so an admin who opened it and lost admin meanwhile is refused at submission, ephemerally in the
message's thread, and nothing is downloaded, recorded or queued. The real `atelier slack` (HTTP mode) and worker
against the Slack emulator (the shared rig, tests.slack.rig), whose `users.info` reports `admins` as admins."""

from __future__ import annotations

import json

import asyncpg
import redis.asyncio as aioredis

from jobs.queue import job_id_for
from tests.slack.emulator import SlackEmulator
from tests.slack.rig import REDIS_DB
from tests.slack.slack_requests import a_png, message_shortcut, post_signed_form, view_submission
from tests.slack.test_lora import lora_rows
from tests.support import redis_url

TEAM, CHANNEL, TS = "TSECTRAIN", "CSECTRAIN", "1700000900.000100"
USER = "USECDEMOTED"  # an admin of this test alone: the rig's other tests share UADMIN
TRAIN_QUEUE = "atelier:train"  # the rig's training queue (settings.train_queue_name's default)
REFUSED = "Only this workspace's admins and owners"


async def test_an_admin_demoted_while_the_train_lora_form_is_open_is_refused_at_submission(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    images = [slack_emulator.add_file(a_png(64, 64 + 8 * i), f"d{i}.png", "image/png") for i in range(3)]
    shortcut = message_shortcut(
        "train_lora",
        {"ts": TS, "files": images},
        channel=CHANNEL,
        response_url=slack_emulator.response_url("sec-train-open"),
        user=USER,
    )
    shortcut["team"]["id"] = shortcut["user"]["team_id"] = TEAM
    slack_emulator.admins.add(USER)
    try:
        answer = await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})
        assert answer.status == 200 and answer.seconds < 3
        [opened] = await slack_emulator.wait_for(
            lambda: slack_emulator.api_calls("views.open", trigger_id=shortcut["trigger_id"]),
            what="the Train LoRA form",
        )
    finally:
        slack_emulator.admins.discard(USER)  # the workspace takes admin away while the form is open
    view = opened.result["view"]

    values = {"name": {"value": "demoted"}, "trigger": {"value": "zq demoted"}, "steps": {"value": "2"}}
    answer = await post_signed_form(
        http_bot, {"payload": json.dumps(view_submission(view, values, user=USER, team=TEAM))}
    )
    assert answer.status == 200 and answer.text == ""  # the form closes; the answer goes to the thread

    def refusal() -> list:
        return slack_emulator.api_calls("chat.postEphemeral", channel=CHANNEL, user=USER)

    def downloaded() -> list:
        return [d for f in images for d in slack_emulator.downloads(f["id"])]

    await slack_emulator.wait_for(
        lambda: refusal() or downloaded(), within_s=15, what="the refusal (or a download)"
    )
    assert downloaded() == [], "the dataset was downloaded for a submitter who is no longer an admin"
    [told] = refusal()
    assert told.args["thread_ts"] == TS and REFUSED in told.args["text"], told.args
    assert not any(slack_emulator.api_calls("files.info", file=f["id"]) for f in images)

    # The refusal is the submission's last act: no job row, no LoRA, nothing on the training queue.
    job_id = job_id_for(f"slack:view:{view['id']}")
    assert not await db.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id)
    assert not await db.fetchval(  # nor any other job of this workspace (the rig's other tests use their own)
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
        "WHERE t.platform = 'slack' AND t.external_id = $1",
        TEAM,
    )
    assert not await lora_rows(db, TEAM)
    client = aioredis.Redis.from_url(redis_url(REDIS_DB))
    try:
        assert await client.zscore(TRAIN_QUEUE, job_id) is None
        assert not await client.exists(f"arq:job:{job_id}")
    finally:
        await client.aclose()
    assert not slack_emulator.api_calls("chat.postMessage", channel=CHANNEL)
