"""Message shortcuts on a message with an image: "Upscale" (×4) and "Enhance faces".

The shortcut is acknowledged first; the image is then downloaded with the bot token (bounded, see `files`),
checked, stored, and the job is submitted into the message's thread. A message without an image, a file that
is not one, or one over the limit gets an ephemeral answer saying so, and nothing is enqueued.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, derive, files
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from bots.slack.workspace import Workspace
from jobs.specs import Enhance, Imagine, Inpaint, Upscale, Vary

Spec = Imagine | Upscale | Enhance | Vary | Inpaint  # what `submit` takes

log = logging.getLogger(__name__)

SHORTCUTS = {"upscale": "upscale", "enhance_faces": "faces"}  # callback_id -> derive action


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the message shortcuts (callback ids `upscale`, `enhance_faces`) to `app`."""
    for callback_id, action in SHORTCUTS.items():
        app.shortcut({"type": "message_action", "callback_id": callback_id})(_listener(services, action))


def _listener(services: SlackServices, action: str):  # -> a bolt listener
    async def derived(message: dict, client: AsyncWebClient, workspace: Workspace) -> Spec:
        image, key = await files.input_image(services, files.image_file(message), client)
        return derive.derived_spec(services, action, image, key)

    return message_shortcut(services, derived, name=f"shortcut_{action}")


def message_shortcut(
    services: SlackServices,
    spec_for: Callable[[dict, AsyncWebClient, Workspace], Awaitable[Spec]],
    *,
    name: str,
    refusals: tuple[type[Exception], ...] = (CommandError,),
):  # -> a bolt listener
    """A listener for a message shortcut: acknowledged first, then `spec_for(message, client, workspace)` builds
    the job, which is submitted into the message's thread. One of `refusals` raised on the way gets an ephemeral
    answer naming the problem, and nothing is enqueued. Used by these shortcuts and by "Replay"
    (`bots.slack.replay_shortcut`)."""

    async def on_shortcut(
        ack: AsyncAck,
        shortcut: dict,
        client: AsyncWebClient,
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        message = shortcut.get("message") or {}
        workspace = context["workspace"]
        try:
            spec = await spec_for(message, client, workspace)
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:shortcut:{shortcut['trigger_id']}",
                channel=(shortcut.get("channel") or {}).get("id"),
                thread_ts=message.get("thread_ts") or message.get("ts"),
                workspace=workspace,
            )
        except refusals as exc:
            await answers.warn(respond, exc)

    on_shortcut.__name__ = name
    return on_shortcut
