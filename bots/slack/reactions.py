"""Reactions on Atelier's result messages: `:mag:` upscales, `:sparkles:` restores faces (configurable).

They work on the results message (every image of the job), on the image message itself (that image) and on a
member's message with images (each image, read through the Web API: `on_image_message`).

Which reaction does what is configured for the installation (ATELIER_SLACK_REACTIONS), and each workspace's
admins may choose their own with `/atelier emoji upscale|faces NAME` (`storage.preferences`): a chosen reaction
replaces the configured one for its action in that workspace, so `:mag:` stops upscaling where another reaction
was chosen; `/atelier emoji --reset upscale` brings the configured one back.

The worker records which job each results message shows (`ids.result_message_key`), so a reaction finds its job
after restarts too. Each image of that job becomes a new job (`derive`) in the same thread. Event retries never
reach this listener twice (`dedupe`), and the request id names the message, reaction, person and image, so
removing and adding the reaction again does not start the work twice either. A refusal (a quota, an image too
large to upscale) is told to the person who reacted only, and so is a reaction from another workspace (a Slack
Connect channel) on this one's results: a job is acted on for its own workspace only (`jobs.ownership`).
Admission's preconditions (`quotas.ledger.precheck`: a pause, a ban, the queue cap, a limit already reached) are
checked before any image is read or anything posted, so a banned member's reaction gets only that ephemeral
refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, derive, files, ids, safety
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from jobs.ownership import ForeignJob
from quotas.errors import QuotaRefused
from quotas.ledger import precheck
from storage.models import Image
from storage.preferences import Preferences, preferences_of

log = logging.getLogger(__name__)

FOREIGN = "That message belongs to another workspace: I act on reactions to its images there only."


def reaction_actions(configured: Mapping[str, str], preferences: Preferences) -> dict[str, str]:
    """The workspace's reactions (name → action): the configured ones, except that an action the workspace
    chose a reaction for answers to that one only."""
    chosen = {"upscale": preferences.upscale_emoji, "faces": preferences.faces_emoji}
    actions = {name: action for name, action in configured.items() if not chosen.get(action)}
    actions.update({name: action for action, name in chosen.items() if name})
    return actions


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the `reaction_added` listener to `app`."""

    @app.event("reaction_added")
    async def reaction_added(event: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        item = event.get("item") or {}
        if item.get("type") != "message":
            return
        ours = event.get("item_user") == context.bot_user_id
        raw = await services.redis.get(ids.result_message_key(item["channel"], item["ts"])) if ours else None
        preferences = await preferences_of(await context["workspace"].tenant())
        action = reaction_actions(config.reactions, preferences).get(event.get("reaction", ""))
        if action is None:
            return  # a reaction that means nothing to Atelier in this workspace
        if raw is None:  # not a results message: an image message of ours, or a member's upload
            await on_image_message(services, event, action, client, context)
            return
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        try:
            job = await context["workspace"].job(job_id)
        except ForeignJob:
            team = context["workspace"].team_id
            log.warning(
                "reaction by %s of team %s on job %s of another workspace: refused",
                event["user"],
                team,
                job_id,
            )
            await answers.warn_in(
                client, channel=item["channel"], user=event["user"], thread_ts=None, problem=FOREIGN
            )
            return
        if job is None:
            return
        data = (job.reply_target or {}).get("data", {})
        thread_ts = data.get("thread_ts")
        workspace = context["workspace"]
        try:
            await precheck(await workspace.tenant(), await workspace.user(), services.tiers)
        except QuotaRefused as refusal:
            log.info("reaction by %s on job %s refused: %s", event["user"], job_id, refusal)
            await answers.warn_in(
                client, channel=item["channel"], user=event["user"], thread_ts=thread_ts, problem=refusal
            )
            return
        log.info("reaction %s by %s on the results of job %s", event["reaction"], event["user"], job_id)
        shown = Image.filter(job_id=job_id)
        if await safety.withholds_flagged(job.tenant_id, safety.job_channel(job)):  # type: ignore[attr-defined]
            shown = shown.filter(flagged=False)  # an image the filter withheld is not acted on either
        indexes = await shown.order_by("index").values_list("index", flat=True)
        for index in indexes:
            request_id = (
                f"slack:reaction:{context.team_id}:{item['channel']}:{item['ts']}:{event['reaction']}:"
                f"{event['user']}:{index}"
            )
            try:
                image, key = await derive.result_image(services, job, index)
                spec = derive.derived_spec(services, action, image, key, job.spec, parent=job.id)
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
                await answers.warn_in(
                    client, channel=item["channel"], user=event["user"], thread_ts=thread_ts, problem=exc
                )
                return


async def on_image_message(
    services: SlackServices, event: dict, action: str, client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """A reaction on a message with images: one of our result images (the file is recorded as a job's image,
    `ids.result_file_key`), or one a member uploaded (read through the Web API with the bot token, with the
    download rules of `files`). Each image becomes one new job in the message's thread."""
    item, user, workspace = event["item"], event["user"], context["workspace"]
    try:
        found = await client.conversations_replies(
            channel=item["channel"], ts=item["ts"], limit=1, inclusive=True
        )
    except SlackApiError as exc:
        log.info("reaction by %s: message %s unreadable (%s)", user, item["ts"], exc.response.get("error"))
        return
    message = next((m for m in found.get("messages") or [] if m.get("ts") == item["ts"]), None)
    if message is None or not [f for f in message.get("files") or [] if files.is_image(f)]:
        return  # a message without an image: nothing to act on
    thread_ts = message.get("thread_ts") or message["ts"]
    try:
        await precheck(await workspace.tenant(), await workspace.user(), services.tiers)
    except QuotaRefused as refusal:
        await answers.warn_in(
            client, channel=item["channel"], user=user, thread_ts=thread_ts, problem=refusal
        )
        return
    for file in files.image_files(message):
        request_id = (
            f"slack:reaction:{context.team_id}:{item['channel']}:{item['ts']}:{event['reaction']}:{user}:"
            f"{file['id']}"
        )
        try:
            recorded = await services.redis.get(ids.result_file_key(file["id"]))
            if recorded is not None:
                job_id, _, index = (recorded.decode() if isinstance(recorded, bytes) else recorded).partition(
                    ":"
                )
                job = await derive.source_job(workspace, job_id, foreign=FOREIGN)
                image, key = await derive.result_image(services, job, int(index))
                spec = derive.derived_spec(services, action, image, key, job.spec, parent=job.id)
            else:
                image, key = await files.input_image(services, file, client)
                spec = derive.derived_spec(services, action, image, key)
            log.info("reaction %s by %s on image %s", event["reaction"], user, file["id"])
            await submit(
                client,
                services,
                spec,
                request_id=request_id,
                channel=item["channel"],
                thread_ts=thread_ts,
                workspace=workspace,
            )
        except CommandError as exc:
            await answers.warn_in(
                client, channel=item["channel"], user=user, thread_ts=thread_ts, problem=exc
            )
            return
