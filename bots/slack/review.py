"""`/atelier review` in Slack: the workspace's withheld images (jobs.moderation), for its admins.

The answer is ephemeral: up to `PAGE` waiting images, each a line (who asked, where, the prompt) with Approve and
Delete buttons. An ephemeral message carries no files, so the image is not shown here; the gallery shows it to
admins where it runs. Approve uploads the image where it was asked (the job's thread), mentioning the asker;
Delete removes its blob and row. Both are logged with the admin who clicked (`/atelier safety --review-log`).
"""

from __future__ import annotations

import logging
import re

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import answers
from bots.slack.admins import is_admin
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from jobs import moderation
from storage.models import Job, Tenant

log = logging.getLogger(__name__)

PAGE = 10
ACTION = re.compile(r"^atelier_review:(approve|delete):(\d{1,12})$")


def action_id(decision: str, review: int) -> str:
    return f"atelier_review:{decision}:{review}"


async def review_message(tenant: Tenant) -> dict:
    """The ephemeral list of waiting reviews, as blocks."""
    waiting = await moderation.pending(tenant, limit=PAGE)
    if not waiting:
        return {"text": "No withheld images are waiting for review."}
    blocks: list[dict] = []
    for review in waiting:
        job = await Job.get_or_none(id=review.job_id)
        prompt = ((job.spec.get("prompt") if job else "") or "")[:120]
        asker = (job.reply_target or {}).get("data", {}).get("user") if job else None
        line = f"*#{review.id}* in <#{review.channel}>" + (f" by <@{asker}>" if asker else "") + f": {prompt}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": f"{decision.title()} #{review.id}"},
                        "style": "primary" if decision == "approve" else "danger",
                        "action_id": action_id(decision, review.id),
                    }
                    for decision in ("approve", "delete")
                ],
            }
        )
    return {"text": f"{len(waiting)} withheld image(s) waiting for review", "blocks": blocks}


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the Approve and Delete buttons of `/atelier review` to `app`."""

    @app.action(ACTION)
    async def decide(
        ack: AsyncAck, action: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        workspace = context["workspace"]
        clicker = workspace.user_id or ""
        if clicker not in config.operators and not await is_admin(client, config.admins, clicker):
            await answers.warn(respond, "Only this workspace's admins can review withheld images.")
            return
        match = ACTION.match(action["action_id"])
        assert match is not None  # the listener's pattern
        tenant = await workspace.tenant()
        try:
            review = await moderation.decide(
                tenant, int(match[2]), match[1], reviewer=clicker, blobs=services.blobs
            )
        except moderation.ReviewError as exc:
            await answers.warn(respond, exc)
            return
        log.info("slack review %s by %s: %s", review.id, clicker, review.decision)
        if review.decision == "deleted":
            await answers.tell(respond, f":wastebasket: Review #{review.id}: image deleted.")
            return
        job = await Job.get(id=review.job_id)
        data = (job.reply_target or {}).get("data", {})
        asker = data.get("user")
        await client.files_upload_v2(
            file_uploads=[
                {"content": await services.blobs.get(review.blob_key), "filename": f"{job.id}-review.png"}
            ],
            channel=data["channel"],
            thread_ts=data.get("thread_ts"),
            initial_comment=(f"<@{asker}> " if asker else "")
            + f"an admin approved your withheld image (review #{review.id}).",
        )
        await answers.tell(
            respond, f":white_check_mark: Review #{review.id}: approved and posted in <#{data['channel']}>."
        )
