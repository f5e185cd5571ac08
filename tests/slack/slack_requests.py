"""What Slack sends an app, built and signed the way Slack does, plus checks of what the app did in return."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import asyncpg
import numpy as np
from PIL import Image as PILImage
from slack_sdk.signature import SignatureVerifier

from tests.slack.conftest import SIGNING_SECRET
from tests.slack.emulator import Call, SlackEmulator

TEAM = "T1"


def signed_headers(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


@dataclass
class Answer:
    status: int
    text: str
    seconds: float


async def post(url: str, body: str, content_type: str, headers: dict[str, str]) -> Answer:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=body.encode(), headers={"Content-Type": content_type, **headers}
        ) as r:
            return Answer(r.status, await r.text(), time.monotonic() - started)


async def post_signed_form(url: str, fields: dict, **sign: object) -> Answer:
    body = urlencode(fields)
    return await post(url, body, "application/x-www-form-urlencoded", signed_headers(body, **sign))  # type: ignore[arg-type]


async def post_signed_json(url: str, payload: dict, extra_headers: dict | None = None) -> Answer:
    body = json.dumps(payload)
    return await post(url, body, "application/json", {**signed_headers(body), **(extra_headers or {})})


def slash_command(
    text: str, *, channel: str, response_url: str, user: str = "U1", team: str = TEAM
) -> dict[str, str]:
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "team_domain": "atelier-test",
        "channel_id": channel,
        "channel_name": "gen",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/imagine",
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{time.time_ns()}.{uuid.uuid4().hex[:8]}",
    }


def block_action(
    action_id: str, *, channel: str, message_ts: str, response_url: str, user: str = "U1"
) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{time.time_ns()}.{uuid.uuid4().hex[:8]}",
        "team": {"id": TEAM, "domain": "atelier-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "gen"},
        "message": {"type": "message", "ts": message_ts, "user": "UBOT", "text": ""},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": action_id,
                "text": {"type": "plain_text", "text": "x"},
                "action_ts": str(time.time()),
            }
        ],
    }


def message_shortcut(
    callback_id: str, message: dict, *, channel: str, response_url: str, user: str = "U1"
) -> dict:
    """What Slack sends when someone picks one of the app's shortcuts in a message's menu."""
    return {
        "type": "message_action",
        "token": "legacy-verification-token",
        "action_ts": str(time.time()),
        "team": {"id": TEAM, "domain": "atelier-test"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "channel": {"id": channel, "name": "gen"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": f"{time.time_ns()}.{uuid.uuid4().hex[:8]}",
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": {"type": "message", "user": user, "text": "", **message},
    }


async def assert_shortcut_refused(
    bot_url: str,
    slack_emulator: SlackEmulator,
    callback_id: str,
    message: dict,
    *,
    channel: str,
    name: str,
    expected: str,
) -> None:
    """Pick shortcut `callback_id` on `message`: the app acknowledges within 3 s, then answers at the response
    URL `name` with an ephemeral message containing `expected`."""
    shortcut = message_shortcut(
        callback_id, message, channel=channel, response_url=slack_emulator.response_url(name)
    )
    answer = await post_signed_form(bot_url, {"payload": json.dumps(shortcut)})
    assert answer.status == 200 and answer.seconds < 3
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses(name), what=expected))[0]
    assert reply.args["response_type"] == "ephemeral" and expected in reply.args["text"], reply.args


def view_submission(view: dict, values: dict[str, dict], *, user: str = "U1", team: str = TEAM) -> dict:
    """What Slack sends when someone submits a modal the app opened (`view`, as `views.open` returned it):
    `values` maps each input block id to its element's state, e.g. {"prompt": {"type": "plain_text_input",
    "value": "a ball"}}; every id must be one of the view's input blocks, as in Slack."""
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert set(values) <= set(inputs), (set(values), set(inputs))
    state = {
        block_id: {inputs[block_id]["action_id"]: {"type": inputs[block_id]["type"], **value}}
        for block_id, value in values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "atelier-test"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": f"{time.time_ns()}.{uuid.uuid4().hex[:8]}",
        "view": {
            **view,
            "state": {"values": state},
            "hash": uuid.uuid4().hex,
            "app_id": "A1",
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def event_callback(event: dict, *, event_id: str, team: str = TEAM) -> dict:
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


# -- what the app did --------------------------------------------------------------------------------------------


def action_ids(message_blocks: list[dict]) -> list[str]:
    return [e["action_id"] for b in message_blocks if b["type"] == "actions" for e in b["elements"]]


@dataclass
class Imagined:
    job_id: str
    status: Call  # the chat.postMessage of the status message
    status_ts: str
    updates: list[Call]  # every chat.update of the status message, in order
    result: Call  # the chat.postMessage with the buttons
    files: list[bytes]
    upload_started_at: float  # when the first files.getUploadURLExternal arrived: generation was over

    def assert_progress_coalesced(self, *, min_gap_s: float = 1.9, edit_allowance_s: float = 1.0) -> None:
        """Status edits at most one per 2 s (arrival times jitter by milliseconds), and none skipped: while the
        job generated, one was due every 2 s plus the time an edit takes (`edit_allowance_s` bounds that)."""
        texts = [u.args["text"] for u in self.updates]
        gaps = [b.at - a.at for a, b in zip(self.updates, self.updates[1:], strict=False)]
        assert gaps and min(gaps) >= min_gap_s, (gaps, texts)
        progress = [u for u in self.updates if "step" in u.args["text"]]
        assert progress, texts
        generating_s = self.upload_started_at - progress[0].at
        due = 1 + int(generating_s // (2 + edit_allowance_s))
        assert len(progress) >= due, (generating_s, texts)


async def status_message(
    emulator: SlackEmulator, channel: str, *, thread_ts: str | None = None, after: float = 0.0
) -> Call:
    """The (first) status message the app posted in `channel` (in `thread_ts`, or as a thread of its own), at
    or after the monotonic time `after`."""

    def probe() -> Call | None:
        for call in emulator.api_calls("chat.postMessage", channel=channel):
            blocks = call.args.get("blocks") or []
            if (
                call.at >= after
                and call.args.get("thread_ts") == thread_ts
                and any(a.startswith("cancel:") for a in action_ids(blocks))
            ):
                return call
        return None

    return await emulator.wait_for(probe, what=f"a status message in {channel}")


async def imagined(
    emulator: SlackEmulator,
    channel: str,
    *,
    thread_ts: str | None = None,
    within_s: float = 180,
    after: float = 0.0,
) -> Imagined:
    """Wait for one whole job's story in `channel` (an /imagine, or a job made from an image): status message
    (posted at or after `after`), upload into its thread, buttons, done."""
    status = await status_message(emulator, channel, thread_ts=thread_ts, after=after)
    status_ts = status.result["ts"]
    thread = thread_ts or status_ts
    job_id = next(a for a in action_ids(status.args["blocks"]) if a.startswith("cancel:")).split(":")[1]

    def result_message() -> Call | None:
        for call in emulator.api_calls("chat.postMessage", channel=channel, thread_ts=thread):
            codes = action_ids(call.args.get("blocks") or [])
            if any(f":{job_id}:" in a and not a.startswith("cancel:") for a in codes):
                return call
        return None

    result = await emulator.wait_for(result_message, within_s=within_s, what=f"the results of {job_id}")

    def done() -> list[Call] | None:
        updates = emulator.api_calls("chat.update", channel=channel, ts=status_ts)
        return updates if updates and "Done" in updates[-1].args.get("text", "") else None

    updates = await emulator.wait_for(done, within_s=10, what=f"the final status of {job_id}")
    completes = [
        c
        for c in emulator.api_calls("files.completeUploadExternal", channel_id=channel, thread_ts=thread)
        if c.at < result.at
        and all(
            emulator.uploads[f["id"]].filename.startswith(f"atelier-{job_id}-")
            for f in json.loads(c.args["files"])
        )
    ]
    assert len(completes) == 1, completes
    files = [emulator.uploads[f["id"]] for f in json.loads(completes[0].args["files"])]
    asks: list[float] = []
    for upload in files:
        # The three steps, in order: ask for a URL, POST the bytes to it, complete the upload into the thread.
        ask = next(
            c
            for c in emulator.api_calls("files.getUploadURLExternal")
            if c.result.get("file_id") == upload.file_id
        )
        put = next(c for c in emulator.calls if c.kind == "upload" and c.method == upload.file_id)
        assert ask.at < put.at < completes[0].at
        assert upload.completed and upload.length == len(upload.data)
        asks.append(ask.at)
    return Imagined(job_id, status, status_ts, updates, result, [u.data for u in files], min(asks))


@dataclass
class Trained:
    job_id: str
    status_ts: str
    thread_ts: str
    ready: Call  # the chat.postMessage announcing the LoRA
    updates: list[Call]  # every chat.update of the status message, the last one saying done
    samples: list[bytes]


async def trained(
    emulator: SlackEmulator, channel: str, *, thread_ts: str | None = None, within_s: float = 240
) -> Trained:
    """Wait for one LoRA training's story in `channel`: status message, samples uploaded into its thread, the
    announcement, the final status."""
    status = await status_message(emulator, channel, thread_ts=thread_ts)
    status_ts = status.result["ts"]
    thread = thread_ts or status_ts
    job_id = next(a for a in action_ids(status.args["blocks"]) if a.startswith("cancel:")).split(":")[1]

    def announced() -> list[Call]:
        calls = emulator.api_calls("chat.postMessage", channel=channel, thread_ts=thread)
        return [c for c in calls if "is ready" in c.args.get("text", "")]

    [ready] = await emulator.wait_for(announced, within_s=within_s, what=f"the LoRA of {job_id} announced")

    def done() -> list[Call] | None:
        updates = emulator.api_calls("chat.update", channel=channel, ts=status_ts)
        return updates if updates and "Done" in updates[-1].args.get("text", "") else None

    updates = await emulator.wait_for(done, within_s=10, what=f"the final status of {job_id}")
    samples = [
        u.data
        for u in emulator.uploads.values()
        if u.completed and u.thread_ts == thread and u.filename.startswith(f"atelier-{job_id}-")
    ]
    return Trained(job_id, status_ts, thread, ready, updates, samples)


def a_png(width: int = 64, height: int = 80) -> bytes:
    """A PNG of seeded noise, as someone would post one."""
    pixels = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


async def job_row(db: asyncpg.Connection, job_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None, f"no job {job_id}"
    return row


async def delivered_row(db: asyncpg.Connection, job_id: str, within: float = 30) -> asyncpg.Record:
    """The job's row once the worker has recorded its delivery, which it does just after its last Slack call:
    a test that saw that call can be quicker than the record."""
    deadline = asyncio.get_running_loop().time() + within
    while (row := await job_row(db, job_id))["delivered_at"] is None:
        assert asyncio.get_running_loop().time() < deadline, (
            f"job {job_id} not recorded as delivered: {dict(row)}"
        )
        await asyncio.sleep(0.1)
    return row
