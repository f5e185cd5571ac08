"""Who may act on a job: the member who asked, or an admin (Manage Server, or the configured admin role)."""

from __future__ import annotations

import discord

from storage.models import Job


def is_admin(interaction: discord.Interaction, admin_role: str | None) -> bool:
    """Administrator or Manage Server in this channel, or holding `admin_role` (a role id or name)."""
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    if admin_role and isinstance(interaction.user, discord.Member):
        return any(admin_role in (str(role.id), role.name) for role in interaction.user.roles)
    return False


async def is_owner(job: Job, user_id: int) -> bool:
    """Whether `user_id` is the Discord user who asked for `job`."""
    if job.user_id is None:  # type: ignore[attr-defined]
        return False
    await job.fetch_related("user")
    return job.user.external_id == str(user_id)
