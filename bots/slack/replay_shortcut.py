"""The "Replay" message shortcut: make an image Atelier posted again, from the recipe it carries (jobs.recipe).

Slash commands carry no files, so replay is a shortcut on the message holding the image (the first image of a
message with several). Its recipe is checked against the image's signed Content Credentials (jobs.provenance)
and runs for the workspace asking, on its quota and with its LoRAs, in the message's thread. An image without a
recipe, an edited recipe, or a model or LoRA this installation or workspace lacks gets an ephemeral answer
naming it; nothing is enqueued.
"""

from __future__ import annotations

import asyncio

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, files
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from engine.lora import LoraLibrary
from jobs.recipe import RecipeError, replay_spec, signed_recipe
from jobs.training import tenant_loras

SHORTCUT = "replay"


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the "Replay" message shortcut (callback id `replay`) to `app`."""

    @app.shortcut({"type": "message_action", "callback_id": SHORTCUT})
    async def replay_shortcut(
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
            data = await files.file_bytes(files.image_file(message), client)
            recipe = await asyncio.to_thread(signed_recipe, data)
            loras = await tenant_loras(await workspace.tenant(), LoraLibrary(services.loras_dir))
            spec = replay_spec(services.registry, recipe, tiny=services.tiny_models, loras=loras)
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:shortcut:{shortcut['trigger_id']}",
                channel=(shortcut.get("channel") or {}).get("id"),
                thread_ts=message.get("thread_ts") or message.get("ts"),
                workspace=workspace,
            )
        except (CommandError, RecipeError) as exc:
            await answers.warn(respond, exc)
