"""`atelier slack` in HTTP mode, driven like Slack drives it: signed POSTs to /slack/events, answers recorded by
the emulator, a real worker doing the work. Each test uses its own channel so they can share the processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlencode

import asyncpg
import pytest

from jobs.editing import LOOP_ACTIONS
from tests.slack.conftest import logged, rig_process
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    action_ids,
    block_action,
    delivered_row,
    event_callback,
    imagined,
    job_row,
    png_size,
    post,
    post_signed_form,
    post_signed_json,
    signed_headers,
    slash_command,
    status_message,
)


async def test_imagine_acks_then_threads_progress_uploads_the_png_and_adds_buttons(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CHTTPIMAGINE"
    # 50 steps at 128x128 (directly: no hires fix) take seconds on this CPU: long enough for progress edits 2 s apart.
    command = slash_command(
        "a lighthouse at dawn --size 128x128 --hires 1 --steps 50 --seed 11",
        channel=channel,
        response_url=slack_emulator.response_url("imagine"),
    )
    answer = await post_signed_form(http_bot, command)
    assert answer.status == 200 and answer.seconds < 3, answer

    story = await imagined(slack_emulator, channel)
    assert "a lighthouse at dawn" in story.status.args["text"]
    assert "position 1 in the queue" in story.status.args["text"] or "Starting" in story.status.args["text"]
    story.assert_progress_coalesced()
    assert [png_size(f) for f in story.files] == [(128, 128)]
    # A single image: the editing loop's buttons (jobs.editing), reroll and faces.
    assert set(action_ids(story.result.args["blocks"])) == {
        *(f"{action.name}:{story.job_id}:0" for action in LOOP_ACTIONS),
        f"reroll:{story.job_id}:0",
        f"faces:{story.job_id}:0",
    }
    assert "seed 11" in json.dumps(story.result.args["blocks"])
    row = await delivered_row(db, story.job_id)
    assert row["status"] == "succeeded"
    assert json.loads(row["reply_target"])["data"]["thread_ts"] == story.status_ts
    tenant = await db.fetchrow(
        "SELECT t.platform, t.external_id FROM tenants t WHERE t.id = $1", row["tenant_id"]
    )
    assert tuple(tenant) == ("slack", "T1")
    assert not slack_emulator.responses("imagine")  # no error was sent back


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a fox --sharpness 3", "unknown flag --sharpness"),
        ("a fox --model nope", "nope"),
        ("--ar 16:9 --seed 3", "the prompt is only flags"),
        ("a fox --steps many", "--steps needs a whole number"),
    ],
)
async def test_bad_input_gets_an_ephemeral_reason_and_enqueues_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, text: str, expected: str
) -> None:
    channel = "CHTTPBAD"
    name = f"bad-{abs(hash(text))}"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    answer = await post_signed_form(
        http_bot, slash_command(text, channel=channel, response_url=slack_emulator.response_url(name))
    )
    assert answer.status == 200 and answer.seconds < 3
    reply = (
        await slack_emulator.wait_for(lambda: slack_emulator.responses(name), what="the ephemeral reply")
    )[0]
    assert reply.args["response_type"] == "ephemeral" and expected in reply.args["text"], reply.args
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)


async def test_a_request_over_the_workspace_quota_is_refused_with_the_reason_and_posts_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, slack_env: dict[str, str]
) -> None:
    # The workspace TQUOTA may make no image today (set through the admin CLI, on the same quotas API).
    admin = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "atelier", "admin", "quota", "slack:TQUOTA", "--images-per-day", "0"),
        env=slack_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(admin.communicate(), 120)
    assert admin.returncode == 0, stderr.decode()
    channel, name = "CHTTPQUOTA", "quota"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    command = slash_command(
        "a fox --steps 3", channel=channel, team="TQUOTA", response_url=slack_emulator.response_url(name)
    )
    answer = await post_signed_form(http_bot, command)
    assert answer.status == 200 and answer.seconds < 3
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses(name), what="the refusal"))[0]
    assert reply.args["response_type"] == "ephemeral" and "Limit reached" in reply.args["text"], reply.args
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)  # nothing shown in the channel


async def test_an_app_mention_delivered_three_times_makes_one_job_and_one_upload(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    # "@Atelier <prompt>" imagines in a thread under the mention. Slack redelivers an event it thinks was not
    # acknowledged, with the same event_id and X-Slack-Retry-Num: all three deliveries must make one job.
    channel, ts = "CHTTPMENTION", "1700000000.000100"
    event = {
        "type": "app_mention",
        "user": "U2",
        "text": "<@UBOT> a paper crane --steps 3 --seed 5",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    payload = event_callback(event, event_id="Ev0MENTION1")
    answers = [await post_signed_json(http_bot, payload)]
    for attempt in (1, 2):
        retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"}
        answers.append(await post_signed_json(http_bot, payload, retry))
    assert [a.status for a in answers] == [200, 200, 200] and max(a.seconds for a in answers) < 3

    story = await imagined(slack_emulator, channel, thread_ts=ts)
    assert [png_size(f) for f in story.files] == [(64, 64)]
    # Both retries were dropped before any listener (logged before they were answered): no second story comes.
    await logged(rig_process("slack-http"), "slack event Ev0MENTION1 redelivered", times=2)
    statuses = [
        c
        for c in slack_emulator.api_calls("chat.postMessage", channel=channel)
        if c.args.get("thread_ts") == ts
    ]
    assert len(statuses) == 2  # one status message, one message of results
    assert len(slack_emulator.api_calls("files.completeUploadExternal", channel_id=channel)) == 1
    rows = await db.fetch(
        "SELECT j.id FROM jobs j JOIN users u ON u.id = j.user_id WHERE u.external_id = 'U2' AND j.spec->>'prompt' = $1",
        "a paper crane",
    )
    assert [r["id"] for r in rows] == [story.job_id]


async def test_forged_and_stale_requests_get_401_and_cause_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CHTTPFORGED"
    calls_before = len(slack_emulator.calls)
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    fields = slash_command(
        "a forged fox", channel=channel, response_url=slack_emulator.response_url("forged")
    )
    body = urlencode(fields)
    forged = signed_headers(body, secret="not-the-signing-secret")
    stale = signed_headers(body, timestamp=int(time.time()) - 6 * 60)  # signed right, 6 min old
    for headers in (forged, stale):
        answer = await post(http_bot, body, "application/x-www-form-urlencoded", headers)
        assert answer.status == 401, answer
    event = event_callback(
        {"type": "app_mention", "user": "U1", "text": "<@UBOT> a fox", "ts": "1.000001", "channel": channel},
        event_id="Ev0FORGED",
    )
    event_body = json.dumps(event)
    answer = await post(http_bot, event_body, "application/json", signed_headers(event_body, secret="wrong"))
    assert answer.status == 401
    await asyncio.sleep(1.0)
    assert slack_emulator.calls[calls_before:] == []  # not even auth.test: nothing reached a listener
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before


async def test_cancel_stops_a_running_job_and_drops_a_queued_one(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    running_channel, queued_channel = "CHTTPCANCEL", "CHTTPCANCELQ"
    slow = slash_command(
        "a slow sunset --size 128x128 --hires 1 --steps 50",
        channel=running_channel,
        response_url=slack_emulator.response_url(),
    )
    assert (await post_signed_form(http_bot, slow)).status == 200
    running_ts, running = await _status_of(slack_emulator, running_channel)
    await slack_emulator.wait_for(
        lambda: _edits(slack_emulator, running_ts, "step"), what="the slow job to start"
    )
    quick = slash_command(
        "a quick moon --steps 3", channel=queued_channel, response_url=slack_emulator.response_url()
    )
    assert (await post_signed_form(http_bot, quick)).status == 200
    queued_ts, queued = await _status_of(slack_emulator, queued_channel)
    status = slack_emulator.api_calls("chat.postMessage", channel=queued_channel)[0]
    assert "position 1 in the queue" in status.args["text"]  # next, behind the one that runs

    # Someone else may not cancel a job; the person who asked may, and so may a configured admin.
    refusal = await _click_cancel(http_bot, slack_emulator, running, running_channel, running_ts, user="U9")
    assert refusal is not None and "Only <@U1>, who asked for this job, or an admin" in refusal
    admin = await _click_cancel(
        http_bot, slack_emulator, queued, queued_channel, queued_ts, user="UCONFIGADMIN"
    )
    assert admin is None
    owner = await _click_cancel(http_bot, slack_emulator, running, running_channel, running_ts, user="U1")
    assert owner is None
    assert (
        "stopping after this step"
        in _edits(slack_emulator, running_ts, "Cancelled by <@U1>")[-1].args["text"]
    )

    # The worker has the last word: it stops the running job after its current step, then drops the queued one.
    stopped = await slack_emulator.wait_for(
        lambda: _edits(slack_emulator, running_ts, "Cancelled by its owner after step"),
        what="the stopped job",
    )
    step = int(stopped[-1].args["text"].split("after step ")[1].split(" ")[0])
    assert 1 <= step < 50
    await slack_emulator.wait_for(
        lambda: _edits(slack_emulator, queued_ts, "Cancelled by an admin."), what="the dropped job"
    )
    await asyncio.sleep(2.5)  # one more edit interval: nothing may come after the last word
    for channel, job_id, ts in ((running_channel, running, running_ts), (queued_channel, queued, queued_ts)):
        assert (await job_row(db, job_id))["status"] == "cancelled"
        assert not slack_emulator.api_calls("files.completeUploadExternal", channel_id=channel)
        assert "Cancelled by" in slack_emulator.api_calls("chat.update", ts=ts)[-1].args["text"]
    assert not _edits(slack_emulator, queued_ts, "step")  # the queued job never ran
    # A second click on a cancelled job changes nothing and says why.
    again = await _click_cancel(http_bot, slack_emulator, running, running_channel, running_ts, user="U1")
    assert again is not None and "already been cancelled" in again


def _edits(emulator: SlackEmulator, ts: str, text: str) -> list:
    return [u for u in emulator.api_calls("chat.update", ts=ts) if text in u.args["text"]]


async def _status_of(emulator: SlackEmulator, channel: str) -> tuple[str, str]:
    status = await status_message(emulator, channel)
    job_id = next(a for a in action_ids(status.args["blocks"]) if a.startswith("cancel:")).split(":")[1]
    return status.result["ts"], job_id


async def _click_cancel(
    http_bot: str, emulator: SlackEmulator, job_id: str, channel: str, status_ts: str, *, user: str
) -> str | None:
    """Click Cancel as `user`; return the ephemeral answer's text, or None when the click was obeyed."""
    name = f"cancel-{job_id}-{user}-{time.monotonic_ns()}"
    click = block_action(
        f"cancel:{job_id}:0",
        channel=channel,
        message_ts=status_ts,
        response_url=emulator.response_url(name),
        user=user,
    )

    mine = f"Cancelled by <@{user}>"
    before = len(_edits(emulator, status_ts, mine))
    answer = await post_signed_form(http_bot, {"payload": json.dumps(click)})
    assert answer.status == 200 and answer.seconds < 3
    await emulator.wait_for(
        lambda: emulator.responses(name) or len(_edits(emulator, status_ts, mine)) > before, what="the cancel"
    )
    replies = emulator.responses(name)
    return replies[0].args["text"] if replies else None


async def test_reroll_makes_a_new_job_with_another_seed_in_the_same_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CHTTPREROLL"
    command = slash_command(
        "a tiny robot --steps 3 --seed 21", channel=channel, response_url=slack_emulator.response_url()
    )
    assert (await post_signed_form(http_bot, command)).status == 200
    first = await imagined(slack_emulator, channel)

    click = block_action(
        f"reroll:{first.job_id}:0",
        channel=channel,
        message_ts=first.result.result["ts"],
        response_url=slack_emulator.response_url("reroll"),
        user="U3",
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(click)})
    assert answer.status == 200 and answer.seconds < 3
    second = await imagined(slack_emulator, channel, thread_ts=first.status_ts)
    assert second.job_id != first.job_id
    assert "ready in about" in second.status.args["text"]  # an ETA, now that the model has a history
    old, new = await job_row(db, first.job_id), await job_row(db, second.job_id)
    old_spec, new_spec = json.loads(old["spec"]), json.loads(new["spec"])
    assert new_spec["seed"] != old_spec["seed"]
    assert {k: v for k, v in new_spec.items() if k != "seed"} == {
        k: v for k, v in old_spec.items() if k != "seed"
    }
    assert new["status"] == "succeeded"
    assert second.files[0] != first.files[0]


async def test_u1_upscales_and_v1_varies_the_image_in_the_same_thread(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel = "CHTTPUPSCALE"
    command = slash_command(
        "a copper kettle --steps 3 --seed 8", channel=channel, response_url=slack_emulator.response_url()
    )
    assert (await post_signed_form(http_bot, command)).status == 200
    first = await imagined(slack_emulator, channel)
    assert [png_size(f) for f in first.files] == [(64, 64)]

    async def click(action: str, name: str) -> float:
        payload = block_action(
            f"{action}:{first.job_id}:0",
            channel=channel,
            message_ts=first.result.result["ts"],
            response_url=slack_emulator.response_url(name),
            user="U5",
        )
        clicked_at = time.monotonic()
        answer = await post_signed_form(http_bot, {"payload": json.dumps(payload)})
        assert answer.status == 200 and answer.seconds < 3
        return clicked_at

    upscaled = await imagined(
        slack_emulator, channel, thread_ts=first.status_ts, after=await click("upscale", "u1")
    )
    assert [png_size(f) for f in upscaled.files] == [(256, 256)]  # the 64x64 image, four times
    row = await job_row(db, upscaled.job_id)
    assert (row["kind"], row["status"]) == ("upscale", "succeeded")
    source_key = await db.fetchval("SELECT blob_key FROM images WHERE job_id = $1", first.job_id)
    assert json.loads(row["spec"])["image"] == source_key  # the stored result, not a copy of it
    assert "×4" in upscaled.status.args["text"]

    varied = await imagined(
        slack_emulator, channel, thread_ts=first.status_ts, after=await click("variations", "v1")
    )
    assert [png_size(f) for f in varied.files] == [(64, 64)]
    spec = json.loads((await job_row(db, varied.job_id))["spec"])
    assert (spec["kind"], spec["prompt"], spec["image"]) == ("vary", "a copper kettle", source_key)
    assert f"reroll:{varied.job_id}:0" in action_ids(varied.result.args["blocks"])
    assert not slack_emulator.responses("u1") and not slack_emulator.responses("v1")  # no complaint


async def test_a_button_on_an_image_that_is_gone_says_so_and_enqueues_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    job_id = "j" + "0" * 20
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    click = block_action(
        f"upscale:{job_id}:0",
        channel="CHTTPGONE",
        message_ts="1.000002",
        response_url=slack_emulator.response_url("gone"),
    )
    answer = await post_signed_form(http_bot, {"payload": json.dumps(click)})
    assert answer.status == 200
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("gone")))[0]
    assert reply.args["response_type"] == "ephemeral" and "That image is gone" in reply.args["text"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
