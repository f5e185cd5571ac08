"""The Cancel button: stop a queued or running job, for the member who asked or an admin.

The cancel itself is the quotas admin API's (`quotas.admin.Admin.cancel_job`): a queued job is marked cancelled
and refunded and never runs; a running one stops after its current step. Either way the worker then writes the
job's last word on the status message. The click is answered at once by rewriting the status message (no more
Cancel button), so the member sees it took.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bots.discord.components import CANCEL_TEMPLATE, cancel_id
from bots.discord.metering import answering
from bots.discord.permissions import is_admin, job_here, refuse_foreign
from bots.discord.status import cancelled_text, title_of
from jobs.ownership import ForeignJob
from quotas.admin import CancelOutcome
from storage.models import Job, JobStatus, get_or_create_tenant, get_or_create_user

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=CANCEL_TEMPLATE):
    """The Cancel button on a status message; persistent (see `views`)."""

    def __init__(self, job_id: str) -> None:
        button = discord.ui.Button(
            label="Cancel", style=discord.ButtonStyle.danger, custom_id=cancel_id(job_id)
        )
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):
            await on_cancel(interaction, self.job_id)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


async def on_cancel(interaction: discord.Interaction[AtelierBot], job_id: str) -> None:
    try:
        await job_here(interaction, job_id)  # another server's job is refused before anything else
    except ForeignJob:
        await refuse_foreign(interaction)
        return
    await interaction.response.defer()  # acknowledge the click; nothing visible yet
    bot = interaction.client
    guild = interaction.guild
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id), guild.name if guild else "")
    user = await get_or_create_user(tenant, str(interaction.user.id), interaction.user.name)
    try:
        try:
            outcome = await bot.admin.cancel_job(job_id, by_user=user, tenant=tenant)
        except PermissionError:
            if not is_admin(interaction, bot.config.admin_role):
                raise
            outcome = await bot.admin.cancel_job(job_id, as_admin=True, tenant=tenant)
    except LookupError:
        await interaction.followup.send("❌ This job no longer exists.", ephemeral=True)
        return
    except PermissionError:
        await interaction.followup.send(
            "❌ Only the member who asked for this job, or an admin, can cancel it.", ephemeral=True
        )
        return
    if outcome.outcome == "finished":
        await interaction.followup.send(
            f"It is too late to cancel: the job had already {outcome.status}.", ephemeral=True
        )
        return
    job = await Job.get(id=job_id)
    assert interaction.message is not None  # a button click always comes with its message
    async with bot.clock.turn(interaction.message.id):
        if (
            outcome.outcome == "stopping"
            and await Job.filter(id=job_id).exclude(status=JobStatus.RUNNING).exists()
        ):
            return  # it stopped meanwhile: the worker's final word ("Cancelled … after step N") stands
        await interaction.edit_original_response(
            content=cancelled_text(title_of(job), _said(outcome, interaction.user.id)), view=None
        )


def _said(outcome: CancelOutcome, user_id: int) -> str:
    if outcome.outcome == "stopping":
        return f"Stopping for <@{user_id}> after the current step…"
    return f"Cancelled by <@{user_id}>."
