"""`/replay image`: make an image Atelier generated again, from the recipe it carries (jobs.recipe).

The attachment must be the PNG as Atelier posted it: its recipe is checked against its signed Content Credentials
(jobs.provenance), so an image without a recipe, or with an edited one, is refused with what is wrong. The replay
runs for the server asking, on its quota, with its LoRAs: a recipe naming a model this installation lacks, or a
LoRA this server does not have, is refused by name. A refusal withdraws the deferral for an ephemeral answer;
nothing is enqueued or charged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord.inputs import checked_attachment, download
from bots.discord.launch import defer_then_start
from bots.discord.loras import guild_view
from jobs.recipe import replay_spec, signed_recipe
from jobs.specs import Imagine
from storage.models import get_or_create_tenant

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot


@app_commands.command(name="replay", description="Make an Atelier image again from the recipe it carries")
@app_commands.guild_only()
@app_commands.describe(image="An image Atelier made, as it was posted (PNG)")
async def replay_command(interaction: discord.Interaction[AtelierBot], image: discord.Attachment) -> None:
    ref = await checked_attachment(interaction, image, command="replay")
    if ref is None:
        return
    bot = interaction.client

    async def from_recipe() -> Imagine:
        recipe = await asyncio.to_thread(signed_recipe, await download(ref))
        guild = interaction.guild
        tenant = await get_or_create_tenant("discord", str(interaction.guild_id), guild.name if guild else "")
        loras = await guild_view(bot, tenant)
        return replay_spec(bot.config.registry, recipe, tiny=bot.config.tiny_models, loras=loras)

    await defer_then_start(interaction, from_recipe, title=f"Replay of {ref.filename}")


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(replay_command)
