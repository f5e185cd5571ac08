"""Who may act on a job: a member of the server it was made in (`job_here`), and for some actions only the member
who asked, or an admin (Manage Server, or the configured admin role)."""

from __future__ import annotations

import logging

import discord

from bots.discord.metering import outcome
from bots.metrics import counted_post
from jobs.ownership import ForeignJob, job_for
from storage.models import Job

log = logging.getLogger(__name__)

FOREIGN = "❌ That button belongs to another server."


async def job_here(interaction: discord.Interaction, job_id: str) -> Job | None:
    """Job `job_id` if it was made in the interaction's server; None when there is none; ForeignJob when it is
    another server's (a custom id made by hand, or a message carried elsewhere): nothing may be done with it."""
    guild = str(interaction.guild_id) if interaction.guild_id is not None else None
    try:
        return await job_for(job_id, "discord", guild)
    except ForeignJob:
        log.warning(
            "discord: %s in guild %s names job %s of another server: refused", interaction.id, guild, job_id
        )
        raise


async def refuse_foreign(interaction: discord.Interaction) -> None:
    """The first response to a click on another server's job: an ephemeral refusal, nothing else."""
    outcome(interaction, "refused")
    with counted_post("discord"):
        await interaction.response.send_message(FOREIGN, ephemeral=True)


def is_admin(interaction: discord.Interaction, admin_role: str | None) -> bool:
    """Administrator or Manage Server in this channel, or holding the role whose id is `admin_role`.

    By id only: a name can be given to a new role by anyone who may manage roles (or by the owner of any other
    server the bot is in), so a role merely named like the admin role, or named as its id, gives no rights."""
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    if admin_role and isinstance(interaction.user, discord.Member):
        return any(str(role.id) == admin_role for role in interaction.user.roles)
    return False


async def is_owner(job: Job, user_id: int) -> bool:
    """Whether `user_id` is the Discord user who asked for `job`."""
    if job.user_id is None:  # type: ignore[attr-defined]
        return False
    await job.fetch_related("user")
    return job.user.external_id == str(user_id)
