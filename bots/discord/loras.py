"""LoRAs in `/imagine`: each server sees its own trained LoRAs over the installation's shared folder.

A name is looked up in the server's view (`jobs.training.tenant_loras`): its ready LoRAs by name, then the
shared `ATELIER_LORA_DIR`. Another server's LoRA is simply unknown here, with the same message as a typo. The
spec carries the scoped name (`ink@12`, `TenantLoras.spec_name`) so the worker fetches that record's weights,
and only for a job of the same tenant.

The lookup reads the database, so it runs after the deferral; the format of the names and weights (how many,
a weight out of range, a name given twice) is checked before it, in memory, with everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from engine.lora import LoraLibrary, TenantLoras, check_loras
from jobs.specs import Imagine
from jobs.training import tenant_loras
from storage.models import Tenant, get_or_create_tenant

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

LoraWeights = Sequence[tuple[str, float]]


async def guild_view(bot: AtelierBot, tenant: Tenant | None) -> TenantLoras:
    """What LoRA names mean on this server (only the shared folder for a server never seen before)."""
    library = LoraLibrary(bot.config.loras_dir)
    if tenant is None:
        return TenantLoras(library, {})
    return await tenant_loras(tenant, library)


async def with_guild_loras(
    interaction: discord.Interaction[AtelierBot], spec: Imagine, loras: LoraWeights
) -> Imagine:
    """`spec` with `loras` as this server knows them; ValueError (naming the LoRAs it has) for one it does not."""
    guild = interaction.guild
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id), guild.name if guild else "")
    view = await guild_view(interaction.client, tenant)
    check_loras(loras, view)
    return spec.model_copy(
        update={"loras": [(view.spec_name(name), float(weight)) for name, weight in loras]}
    )


async def lora_names(interaction: discord.Interaction[AtelierBot]) -> list[str]:
    """The names `/imagine` accepts on this server (for autocomplete): nothing is created to answer."""
    tenant = await Tenant.get_or_none(platform="discord", external_id=str(interaction.guild_id))
    return (await guild_view(interaction.client, tenant)).names()
