"""The buttons: Cancel on a status message; U1…, V1…, Reroll and Enhance faces under results.

Every button's id is `<action>:<job_id>:<index>` (see `ids`), so a click after a restart finds its job in the
database. A click is acted on only when the job is the clicker's workspace's (`derive.source_job`): in a Slack
Connect channel, or from a hand-made payload, another workspace's job is refused and nothing is posted or
enqueued. Cancel goes through the quotas admin API (`quotas.admin.Admin.cancel_job`), as the CLI and Discord do:
a queued job is refunded and never runs, a running one stops after its current step; the worker then writes the
status message's last word. U, V and Enhance faces start a new job from that one image (`derive`) in the same
thread; Reroll repeats a seeded job (imagine, variations, inpainting) with a new seed.
"""

from __future__ import annotations

import logging
import secrets

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, blocks, derive, ids, loop
from bots.slack.admins import is_admin
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from jobs.specs import MAX_SEED, Imagine, Inpaint, Vary
from storage.models import Job

log = logging.getLogger(__name__)

SEEDED = {"imagine": Imagine, "vary": Vary, "inpaint": Inpaint}  # kinds a reroll repeats with a new seed
FINISHED = {"succeeded": "finished", "failed": "failed", "cancelled": "been cancelled"}


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the button listeners to `app`."""

    @app.action(ids.matcher("cancel"))
    async def cancel(
        ack: AsyncAck, action: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        job_id = ids.decode(action["action_id"]).job_id
        workspace = context["workspace"]
        clicker = workspace.user_id or ""
        try:
            await derive.source_job(workspace, job_id, gone="This job no longer exists.")
        except CommandError as exc:
            await answers.warn(respond, exc)
            return
        tenant = await workspace.tenant()
        try:
            try:
                outcome = await services.admin.cancel_job(
                    job_id, by_user=await workspace.user(), tenant=tenant
                )
            except PermissionError:
                if not await is_admin(client, config.admins, clicker):
                    raise
                outcome = await services.admin.cancel_job(job_id, as_admin=True, tenant=tenant)
        except LookupError:
            await answers.warn(respond, "This job no longer exists.")
            return
        except PermissionError:
            job = await Job.get(id=job_id)
            owner = (job.reply_target or {}).get("data", {}).get("user")
            await answers.warn(
                respond, f"Only <@{owner}>, who asked for this job, or an admin can cancel it."
            )
            return
        if outcome.outcome == "finished":
            await answers.warn(
                respond, f"There is nothing to cancel: this job has already {FINISHED[outcome.status]}."
            )
            return
        # Answer the click at once on the status message (no more Cancel button); the worker writes the last word
        # when it drops the queued job or stops the running one after its current step.
        job = await Job.get(id=job_id)
        data = (job.reply_target or {}).get("data", {})
        if "status_ts" in data:
            if outcome.outcome == "cancelled":
                status = blocks.cancelled_status(
                    job.id, job.spec, data.get("user"), f"Cancelled by <@{clicker}>."
                )
            else:
                status = blocks.stopping_status(job.id, job.spec, data.get("user"), clicker)
            await client.chat_update(channel=data["channel"], ts=data["status_ts"], **status)
        log.info("job %s: cancel by slack user %s: %s", job_id, clicker, outcome.outcome)

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
        gone = "I can't find the job these images came from any more."
        try:
            job = await derive.source_job(context["workspace"], ref.job_id, gone=gone)
            if job.kind not in SEEDED:
                raise CommandError(gone)
            if await loop.remix_on(context, body["user"]["id"]):  # the prompt to edit first (bots.slack.loop)
                view = loop.remix_modal("reroll", job, 0, body["channel"]["id"])
                await client.views_open(trigger_id=body["trigger_id"], view=view)
                return
            data = (job.reply_target or {}).get("data", {})
            spec = (
                SEEDED[job.kind]
                .model_validate(job.spec)
                .model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})
            )
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
            await answers.warn(respond, exc)

    @app.action(ids.matcher(*derive.ACTIONS))
    async def derived(
        ack: AsyncAck,
        body: dict,
        action: dict,
        client: AsyncWebClient,
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        ref = ids.decode(action["action_id"])
        try:
            source = await derive.source_job(context["workspace"], ref.job_id)
            if ref.action == "variations" and await loop.remix_on(context, body["user"]["id"]):
                view = loop.remix_modal("vary", source, ref.index, body["channel"]["id"])
                await client.views_open(trigger_id=body["trigger_id"], view=view)  # prompt and strength first
                return
            image, key = await derive.result_image(services, source, ref.index)
            spec = derive.derived_spec(services, ref.action, image, key, source.spec, parent=source.id)
            data = (source.reply_target or {}).get("data", {})
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
            await answers.warn(respond, exc)
