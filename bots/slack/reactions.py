"""Reactions on Atelier's result messages: `:mag:` upscales, `:sparkles:` restores faces (configurable).

The worker records which job each results message shows (`ids.result_message_key`), so a reaction finds its job
after restarts too. Event retries never reach this listener twice (`dedupe`). These reactions are not wired to
the upscale and face-restoration jobs yet: until they are, the person who reacted is told so, and nothing is
enqueued.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import ids
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from storage.models import Job

log = logging.getLogger(__name__)

LABELS = {"upscale": "Upscaling", "faces": "Face restoration"}


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
        log.info("reaction %s by %s on the results of job %s", event["reaction"], event["user"], job_id)
        await client.chat_postEphemeral(
            channel=item["channel"],
            user=event["user"],
            thread_ts=(job.reply_target or {}).get("data", {}).get("thread_ts"),
            text=f":warning: {LABELS[action]} by reaction is not available on this server yet.",
        )
