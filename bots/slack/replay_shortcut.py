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
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import files
from bots.slack.services import SlackServices
from bots.slack.shortcuts import message_shortcut
from bots.slack.workspace import Workspace
from engine.lora import LoraLibrary
from jobs.recipe import RecipeError, replay_spec, signed_recipe
from jobs.specs import Imagine
from jobs.training import tenant_loras

SHORTCUT = "replay"


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the "Replay" message shortcut (callback id `replay`) to `app`."""

    async def from_recipe(message: dict, client: AsyncWebClient, workspace: Workspace) -> Imagine:
        data = await files.file_bytes(files.image_file(message), client)
        recipe = await asyncio.to_thread(signed_recipe, data)
        loras = await tenant_loras(await workspace.tenant(), LoraLibrary(services.loras_dir))
        return replay_spec(services.registry, recipe, tiny=services.tiny_models, loras=loras)

    app.shortcut({"type": "message_action", "callback_id": SHORTCUT})(
        message_shortcut(services, from_recipe, name="replay_shortcut", refusals=(CommandError, RecipeError))
    )
