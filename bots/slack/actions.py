"""The buttons: Cancel on a status message; U1…, V1…, Reroll and Enhance faces under results.

Every button's id is `<action>:<job_id>:<index>` (see `ids`), so a click after a restart finds its job in the
database. Upscale, variations and face restoration need job kinds that do not exist yet: until they do, those
buttons say so to the person who clicked, and nothing is enqueued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import UTC, datetime

from arq.jobs import Job as ArqJob
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import blocks, ids
from bots.slack.admins import is_admin
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from jobs import events
from jobs.specs import Imagine
from storage.models import Job, JobStatus

log = logging.getLogger(__name__)

ABORT_WAIT_S = 10.0
NOT_YET = {
    "upscale": "Upscaling",
    "variations": "Variations",
    "faces": "Face restoration",
}


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the button listeners to `app`."""

    @app.action(ids.matcher("cancel"))
    async def cancel(
        ack: AsyncAck, action: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        ref = ids.decode(action["action_id"])
        job = await Job.get_or_none(id=ref.job_id)
        if job is None:
            await _tell(respond, "I can't find this job any more.")
            return
        data = (job.reply_target or {}).get("data", {})
        clicker = context.user_id or ""
        if clicker != data.get("user") and not await is_admin(client, config.admins, clicker):
            await _tell(respond, f"Only <@{data.get('user')}> or an admin can cancel this job.")
            return
        cancelled = await Job.filter(id=job.id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED,
            finished_at=datetime.now(UTC),
            error=f"cancelled by slack user {clicker}",
        )
        if not cancelled:
            await _tell(respond, f"This job is already {job.status.value}: there is nothing to cancel.")
            return
        await events.publish(services.redis, job.id, "cancelled", message=f"cancelled by {clicker}")
        await client.chat_update(
            channel=data["channel"],
            ts=data["status_ts"],
            **blocks.cancelled_status(job.id, job.spec, data.get("user"), clicker),
        )
        # A queued job is dropped when a worker reaches it; a running one has its task cancelled.
        aborted = False
        with contextlib.suppress(asyncio.TimeoutError):
            aborted = await ArqJob(job.id, services.redis, _queue_name=services.queue_name).abort(
                timeout=ABORT_WAIT_S
            )
        log.info("job %s cancelled by slack user %s (worker aborted it: %s)", job.id, clicker, aborted)

    @app.action(ids.matcher("reroll"))
    async def reroll(
        ack: AsyncAck,
        body: dict,
        action: dict,
        client: AsyncWebClient,
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        ref = ids.decode(action["action_id"])
        job = await Job.get_or_none(id=ref.job_id)
        if job is None or job.kind != "imagine":
            await _tell(respond, "I can't find the job these images came from any more.")
            return
        data = (job.reply_target or {}).get("data", {})
        spec = Imagine.model_validate(job.spec).model_copy(update={"seed": secrets.randbelow(2**32)})
        try:
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:action:{body['trigger_id']}",
                channel=data.get("channel") or body["channel"]["id"],
                thread_ts=data.get("thread_ts"),
                workspace=context["workspace"],
            )
        except CommandError as exc:
            await _tell(respond, str(exc))

    @app.action(ids.matcher(*NOT_YET))
    async def not_available_yet(ack: AsyncAck, action: dict, respond: AsyncRespond) -> None:
        await ack()
        ref = ids.decode(action["action_id"])
        await _tell(respond, f"{NOT_YET[ref.action]} is not available on this server yet.")


async def _tell(respond: AsyncRespond, text: str) -> None:
    """An ephemeral answer to the person who clicked; the message with the button stays as it is."""
    await respond(text=f":warning: {text}", response_type="ephemeral", replace_original=False)
