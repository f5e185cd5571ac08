"""Reactions on Atelier's result messages: `:mag:` upscales, `:sparkles:` restores faces (configurable).

The worker records which job each results message shows (`ids.result_message_key`), so a reaction finds its job
after restarts too. Each image of that job becomes a new job (`derive`) in the same thread. Event retries never
reach this listener twice (`dedupe`), and the request id names the message, reaction, person and image, so
removing and adding the reaction again does not start the work twice either. A refusal (a quota, an image too
large to upscale) is told to the person who reacted only.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import derive, ids
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from storage.models import Image, Job

log = logging.getLogger(__name__)


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the `reaction_added` listener to `app`."""

    @app.event("reaction_added")
    async def reaction_added(event: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        action = config.reactions.get(event.get("reaction", ""))
        item = event.get("item") or {}
        if action is None or item.get("type") != "message" or event.get("item_user") != context.bot_user_id:
            return  # not an Atelier action, or not on one of our messages
        raw = await services.redis.get(ids.result_message_key(item["channel"], item["ts"]))
        if raw is None:
            return  # a status message or another message of ours: nothing to act on
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        job = await Job.get_or_none(id=job_id)
        if job is None:
            return
        data = (job.reply_target or {}).get("data", {})
        thread_ts = data.get("thread_ts")
        log.info("reaction %s by %s on the results of job %s", event["reaction"], event["user"], job_id)
        indexes = await Image.filter(job_id=job_id).order_by("index").values_list("index", flat=True)
        for index in indexes:
            request_id = (
                f"slack:reaction:{context.team_id}:{item['channel']}:{item['ts']}:{event['reaction']}:"
                f"{event['user']}:{index}"
            )
            try:
                source, image, key = await derive.result_image(services, job_id, index)
                spec = derive.derived_spec(services, action, image, key, source.spec)
                await submit(
                    client,
                    services,
                    spec,
                    request_id=request_id,
                    channel=data.get("channel") or item["channel"],
                    thread_ts=thread_ts,
                    workspace=context["workspace"],
                )
            except CommandError as exc:
                await client.chat_postEphemeral(
                    channel=item["channel"], user=event["user"], thread_ts=thread_ts, text=f":warning: {exc}"
                )
                return
