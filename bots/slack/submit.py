"""Start a job from Slack: admit and enqueue it, exactly once per request, then post its status message.

Enqueueing comes first, so a refused request (a quota, a paused workspace, a banned user) posts nothing in the
channel, and the status message shows the job's real queue position and ETA. The message's `ts` (the thread the
worker answers in, for a new thread) is then written into the job's reply target; the worker's replier waits
for it if the job starts before it is there. A request seen before (a redelivered event, a double click) posts
nothing. A channel the bot cannot post in cancels the job (refunded, it never runs) and says why. A request
whose status message is up counts as `started` (`metering`).
"""

from __future__ import annotations

import logging
import uuid

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.metrics import counted_post
from bots.slack import blocks
from bots.slack.metering import outcome
from bots.slack.services import SlackServices
from bots.slack.workspace import Workspace
from jobs.queue import Enqueued, enqueue
from jobs.specs import Enhance, Imagine, Inpaint, ReplyTarget, Upscale, Vary
from quotas.errors import QuotaRefused
from storage.models import Job
from storage.settings import member_lane

log = logging.getLogger(__name__)

CHANNEL_ERRORS = {
    "not_in_channel": "I'm not in this channel: invite me with `/invite @Atelier`, then try again.",
    "channel_not_found": "I can't see this channel: invite me with `/invite @Atelier`, then try again.",
    "is_archived": "This channel is archived: I can't post here.",
    "restricted_action": "This workspace doesn't let me post in this channel.",
}


def command_request_id(command: dict) -> str:
    """A slash command's request identity: its trigger id, which Slack's retries of the same command repeat
    (a command without one, as some clients send, is its own request)."""
    return f"slack:command:{command.get('trigger_id') or uuid.uuid4()}"


async def submit(
    client: AsyncWebClient,
    services: SlackServices,
    spec: Imagine | Upscale | Enhance | Vary | Inpaint,
    *,
    request_id: str,
    channel: str,
    thread_ts: str | None,
    workspace: Workspace,
    lane: str | None = None,
) -> str | None:
    """Enqueue `spec` and post its status message (in `thread_ts`, or as a new thread); return the job id, or
    None when this request had already been submitted. Refusals are CommandErrors with the reason. `lane`:
    --relax / --fast from the prompt (jobs.relax); None: the member's lane from `/atelier settings`.

    A member in private mode (`/atelier settings`) gets everything in their direct messages with the app instead:
    nothing of the job appears in the channel."""
    if workspace.user_id and await private_mode(workspace):
        opened = await client.conversations_open(users=workspace.user_id)
        channel, thread_ts = opened["channel"]["id"], None
    data = reply_data(channel, thread_ts, workspace)
    if lane is None:
        lane = await member_lane("slack", workspace.team_id, workspace.user_id or "")
    try:
        queued = await enqueue(
            services.redis,
            spec,
            request_id=request_id,
            reply_target=ReplyTarget(platform="slack", data=data),
            queue_name=services.queue_name,
            tenant=await workspace.tenant(),
            user=await workspace.user(),
            tiers=services.tiers,
            lane=lane,
        )
    except QuotaRefused as refusal:
        raise CommandError(str(refusal)) from None
    return await post_status(
        client, services, queued, spec.model_dump(mode="json"), data, request_id=request_id
    )


async def submit_command(
    client: AsyncWebClient,
    services: SlackServices,
    spec: Imagine | Upscale | Enhance | Vary | Inpaint,
    command: dict,
    workspace: Workspace,
    lane: str | None = None,
) -> str | None:
    """`submit` for a slash command: its status message starts a thread in the command's channel."""
    return await submit(
        client,
        services,
        spec,
        lane=lane,
        request_id=command_request_id(command),
        channel=command["channel_id"],
        thread_ts=None,
        workspace=workspace,
    )


async def private_mode(workspace: Workspace) -> bool:
    from storage.settings import settings_for

    settings = await settings_for("slack", workspace.team_id, workspace.user_id or "")
    return settings is not None and settings.private


def reply_data(channel: str, thread_ts: str | None, workspace: Workspace) -> dict:
    """A job's Slack address before its status message exists (the reply target's `data`)."""
    return {"channel": channel, "thread_ts": thread_ts, "team": workspace.team_id, "user": workspace.user_id}


async def post_status(
    client: AsyncWebClient,
    services: SlackServices,
    queued: Enqueued,
    spec: dict,
    data: dict,
    *,
    request_id: str,
) -> str | None:
    """Post the status message of a job just enqueued at `data`'s address and record it in the job's reply
    target; None, posting nothing, when the request had been seen before."""
    if not queued.created:
        log.info("slack request %s seen before (job %s): nothing new", request_id, queued.job_id)
        return None
    status = blocks.queued_status(
        queued.job_id, spec, data.get("user"), queued.position, queued.eta_s, queued.lane
    )
    channel, thread_ts = data["channel"], data.get("thread_ts")
    try:
        with counted_post("slack"):
            posted = await client.chat_postMessage(channel=channel, thread_ts=thread_ts, **status)
    except SlackApiError as exc:
        error = exc.response.get("error", "")
        if error not in CHANNEL_ERRORS:
            raise
        # Nobody could follow it here: it must not run, nor count against the quota.
        await services.admin.cancel_job(queued.job_id, as_admin=True)
        raise CommandError(CHANNEL_ERRORS[error]) from None
    data = {
        **data,
        "channel": posted.get("channel", channel),
        "status_ts": posted["ts"],
        "thread_ts": thread_ts or posted["ts"],
    }
    await Job.filter(id=queued.job_id).update(
        reply_target=ReplyTarget(platform="slack", data=data).model_dump(mode="json")
    )
    log.info("slack request %s -> job %s (position %s)", request_id, queued.job_id, queued.position)
    outcome("started")
    return queued.job_id
