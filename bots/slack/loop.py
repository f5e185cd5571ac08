"""The editing loop's buttons under a single image in Slack: the same actions as Discord's (`jobs.editing`), ids
`<action>:<job_id>:<index>` (`ids`) that survive restarts, acted on only for the clicker's own workspace
(`derive.source_job`).

Custom Zoom always opens a modal (factor and prompt); with the member's remix mode on (`/atelier settings`),
vary, zoom and pan open one too, with the prompt (and a variation's strength). A mistake in a field is answered
on the modal (`response_action: errors`) and nothing is queued.
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
from bots.slack import answers, derive, ids, modals
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from engine.edit_requests import DEFAULT_VARIATION_STRENGTH
from jobs.editing import (
    LOOP,
    REMIX_TITLES,
    VARY_STRENGTHS,
    Lineage,
    loop_spec,
    parse_strength,
    parse_zoom,
    reroll_spec,
)
from jobs.specs import MAX_PROMPT_CHARS, MAX_SEED
from storage.models import Image, Job
from storage.settings import settings_for

log = logging.getLogger(__name__)

MODAL = "atelier_remix"


def remix_modal(action: str, source: Job, index: int, channel: str) -> dict:
    """The modal a remix (or Custom Zoom) opens: the prompt, and the strength or the factor."""
    blocks = [
        modals.text_input(
            "prompt",
            "Prompt",
            initial=(source.spec.get("prompt") or "")[:MAX_PROMPT_CHARS],
            optional=True,
            max_length=MAX_PROMPT_CHARS,
            multiline=True,
        )
    ]
    if action.startswith("vary"):
        strength = VARY_STRENGTHS.get(action.removeprefix("vary_"), DEFAULT_VARIATION_STRENGTH)
        blocks.append(modals.text_input("extra", "Strength (above 0, at most 1)", initial=f"{strength:g}"))
    elif action == "zoom_custom":
        blocks.append(modals.text_input("extra", "Zoom out factor (1.1 to 2)", initial="1.5"))
    metadata = {"action": action, "job": source.id, "index": index, "channel": channel}
    return modals.modal(MODAL, REMIX_TITLES[action][:24], "Go", blocks, metadata)


def field_errors(view: dict) -> dict[str, str]:
    """What is wrong with the modal's fields, by block id (empty: nothing)."""
    action = modals.metadata(view).get("action", "")
    extra = modals.text_value(view, "extra")
    try:
        if action.startswith("vary"):
            parse_strength(extra)
        elif action == "zoom_custom":
            parse_zoom(extra)
    except ValueError as exc:
        return {"extra": str(exc)}
    return {}


async def start(
    client: AsyncWebClient,
    services: SlackServices,
    context: AsyncBoltContext,
    action: str,
    source: Job,
    index: int,
    *,
    request_id: str,
    channel: str,
    prompt: str | None = None,
    factor: float | None = None,
    strength: float | None = None,
) -> None:
    """Build the action's spec from the source image and submit it into the source's thread."""
    image, key = await derive.result_image(services, source, index)
    row = await Image.get(job_id=source.id, index=index)
    try:
        spec = loop_spec(
            services.registry,
            action,
            image=image,
            lineage=Lineage.of(source.id, source.spec, row.seed),
            prompt=prompt,
            factor=factor,
            strength=strength,
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            image_key=key,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    data = (source.reply_target or {}).get("data", {})
    await submit(
        client,
        services,
        spec,  # type: ignore[arg-type]  # submit takes every spec kind
        request_id=request_id,
        channel=data.get("channel") or channel,
        thread_ts=data.get("thread_ts"),
        workspace=context["workspace"],
    )


async def remix_on(context: AsyncBoltContext, user: str) -> bool:
    """Whether `user` has remix mode on in this workspace (`/atelier settings`)."""
    settings = await settings_for("slack", context["workspace"].team_id, user)
    return settings is not None and settings.remix


async def reroll(
    client: AsyncWebClient,
    services: SlackServices,
    context: AsyncBoltContext,
    source: Job,
    prompt: str,
    view: dict,
    meta: dict,
) -> None:
    """A remixed reroll: the source request with a new seed and the modal's prompt."""
    from bots.slack.actions import SEEDED

    if source.kind not in SEEDED:
        raise CommandError("I can't find the job these images came from any more.")
    try:
        spec = reroll_spec(
            SEEDED[source.kind], source.spec, prompt=prompt, random_seed=secrets.randbelow(MAX_SEED + 1)
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    data = (source.reply_target or {}).get("data", {})
    await submit(
        client,
        services,
        spec,  # type: ignore[arg-type]
        request_id=f"slack:view:{view['id']}:{view.get('hash', '')}",
        channel=data.get("channel") or meta["channel"],
        thread_ts=data.get("thread_ts"),
        workspace=context["workspace"],
    )


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the editing loop's button listener and its modal's submission to `app`."""

    @app.action(ids.matcher(*LOOP))
    async def loop_button(
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
            settings = await settings_for("slack", context["workspace"].team_id, body["user"]["id"])
            if ref.action == "zoom_custom" or (
                settings is not None and settings.remix and LOOP[ref.action].remix
            ):
                view = remix_modal(ref.action, source, ref.index, body["channel"]["id"])
                await client.views_open(trigger_id=body["trigger_id"], view=view)
                return
            await start(
                client,
                services,
                context,
                ref.action,
                source,
                ref.index,
                request_id=f"slack:action:{body['trigger_id']}",
                channel=body["channel"]["id"],
            )
        except CommandError as exc:
            await answers.warn(respond, exc)

    @app.view(MODAL)
    async def remix_submitted(
        ack: AsyncAck, view: dict, body: dict, client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        errors = field_errors(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        meta = modals.metadata(view)
        action, extra = meta["action"], modals.text_value(view, "extra")
        user = body["user"]["id"]
        try:
            source = await derive.source_job(context["workspace"], meta["job"])
            if action == "reroll":
                await reroll(client, services, context, source, modals.text_value(view, "prompt"), view, meta)
                return
            await start(
                client,
                services,
                context,
                action,
                source,
                int(meta["index"]),
                request_id=f"slack:view:{view['id']}:{view.get('hash', '')}",
                channel=meta["channel"],
                prompt=modals.text_value(view, "prompt"),
                factor=parse_zoom(extra) if action == "zoom_custom" else None,
                strength=parse_strength(extra) if action.startswith("vary") else None,
            )
        except CommandError as exc:
            await answers.warn_in(client, channel=meta["channel"], user=user, thread_ts=None, problem=exc)
