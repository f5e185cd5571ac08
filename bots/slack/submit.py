"""Start a job from Slack: post its status message, then record and enqueue it, exactly once per request.

The status message is posted first because its `ts` is the thread the worker answers in (and the message it
edits), so it must be in the job's reply target before a worker can pick the job up. A request seen before
(a redelivered event, a double click) posts nothing; one that loses a race with its twin deletes its message.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import blocks
from bots.slack.services import SlackServices
from bots.slack.workspace import Workspace
from jobs.queue import Spec, enqueue, job_id_for
from jobs.specs import ReplyTarget
from storage.models import Job, JobStatus

log = logging.getLogger(__name__)

ETA_SAMPLE = 20  # recent jobs of the same model whose GPU time estimates the wait
CHANNEL_ERRORS = {
    "not_in_channel": "I'm not in this channel: invite me with `/invite @Atelier`, then try again.",
    "channel_not_found": "I can't see this channel: invite me with `/invite @Atelier`, then try again.",
    "is_archived": "This channel is archived: I can't post here.",
    "restricted_action": "This workspace doesn't let me post in this channel.",
}


async def submit(
    client: AsyncWebClient,
    services: SlackServices,
    spec: Spec,
    *,
    request_id: str,
    channel: str,
    thread_ts: str | None,
    workspace: Workspace,
) -> str | None:
    """Post the status message (in `thread_ts`, or as a new thread) and enqueue `spec`; return the job id,
    or None when this request had already been submitted. A channel the bot cannot post in is a CommandError."""
    job_id = job_id_for(request_id)
    if await Job.exists(id=job_id):
        log.info("slack request %s seen before (job %s): nothing new", request_id, job_id)
        return None
    spec_data = spec.model_dump(mode="json")
    ahead = await services.redis.zcard(services.queue_name)
    eta_s = await estimate_eta(spec.model, ahead)
    status = blocks.queued_status(job_id, spec_data, workspace.user_id, ahead + 1, eta_s)
    try:
        posted = await client.chat_postMessage(channel=channel, thread_ts=thread_ts, **status)
    except SlackApiError as exc:
        error = exc.response.get("error", "")
        if error in CHANNEL_ERRORS:
            raise CommandError(CHANNEL_ERRORS[error]) from None
        raise
    status_ts, channel_id = posted["ts"], posted.get("channel", channel)
    target = ReplyTarget(
        platform="slack",
        data={
            "channel": channel_id,
            "status_ts": status_ts,
            "thread_ts": thread_ts or status_ts,
            "team": workspace.team_id,
            "user": workspace.user_id,
        },
    )
    queued = await enqueue(
        services.redis,
        spec,
        request_id=request_id,
        reply_target=target,
        queue_name=services.queue_name,
        tenant=await workspace.tenant(),
        user=await workspace.user(),
    )
    if not queued.created:
        # A twin of this request got there between the check above and the insert: keep only its message.
        await client.chat_delete(channel=channel_id, ts=status_ts)
        return None
    log.info("slack request %s -> job %s (%d ahead)", request_id, job_id, ahead)
    return job_id


async def estimate_eta(model: str, ahead: int) -> float | None:
    """Seconds until a new job of `model` is done: the mean GPU time of its recent jobs, times the jobs ahead
    plus this one. None without history (a new model says nothing rather than guess)."""
    seconds = (
        await Job.filter(model=model, status=JobStatus.SUCCEEDED)
        .order_by("-finished_at")
        .limit(ETA_SAMPLE)
        .values_list("gpu_seconds", flat=True)
    )
    if not seconds:
        return None
    return sum(seconds) / len(seconds) * (ahead + 1)
