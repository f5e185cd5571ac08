"""The buttons under a result: U/V/F (a new job from one image, see `derive`), reroll (the same request with a
new seed) and delete (the asker or an admin). Every one acts only on a job of the server it is clicked in
(`permissions.job_here`).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

import discord

from bots.discord.components import RESULT_TEMPLATE
from bots.discord.derive import on_derive
from bots.discord.launch import defer_status, start_job, withdraw
from bots.discord.loop import RemixModal, remix_on
from bots.discord.metering import answering
from bots.discord.permissions import is_admin, is_owner, job_here, refuse_foreign
from bots.discord.status import title_of
from jobs.ownership import ForeignJob
from jobs.specs import MAX_SEED, Imagine, Inpaint, Vary
from storage.models import Job

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

SEEDED = {"imagine": Imagine, "vary": Vary, "inpaint": Inpaint}  # kinds a reroll can repeat with a new seed


class ResultButton(discord.ui.DynamicItem[discord.ui.Button], template=RESULT_TEMPLATE):
    """Any button under a result. The worker built the message (see `components`); this parses the id back."""

    def __init__(self, item: discord.ui.Button, action: str, job_id: str, index: int) -> None:
        super().__init__(item)
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, match["action"], match["job_id"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):  # U, V, F and reroll say started or refused (`launch`)
            await on_result_button(interaction, self.action, self.job_id, self.index)


async def on_result_button(
    interaction: discord.Interaction[AtelierBot], action: str, job_id: str, index: int
) -> None:
    """Act on the job the button names, if it is this server's; another server's is refused before anything is
    deferred, posted or enqueued."""
    try:
        job = await job_here(interaction, job_id)
    except ForeignJob:
        await refuse_foreign(interaction)
        return
    if action == "vary" and job is not None and await remix_on(interaction):
        await interaction.response.send_modal(RemixModal("vary", job, index))  # the prompt and strength first
        return
    if action == "reroll":
        if job is not None and job.kind in SEEDED and await remix_on(interaction):
            await interaction.response.send_modal(RemixModal("reroll", job, 0))  # the prompt to edit first
            return
        await on_reroll(interaction, job)
    elif action == "delete":
        await on_delete(interaction, job)
    else:
        await on_derive(interaction, action, job, index)


async def on_reroll(interaction: discord.Interaction[AtelierBot], job: Job | None) -> None:
    """The same request with a new seed, as a new job whose status message appears where the button was."""
    message_id = await defer_status(interaction)
    if job is None or job.kind not in SEEDED:
        await withdraw(interaction, "That job is gone, or has no seed to change; use /imagine again.")
        return
    spec = (
        SEEDED[job.kind].model_validate(job.spec).model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})
    )
    await start_job(interaction, message_id, spec, title=title_of(job))


async def on_delete(interaction: discord.Interaction[AtelierBot], job: Job | None) -> None:
    await interaction.response.defer()
    owner = job is not None and await is_owner(job, interaction.user.id)
    if not (owner or is_admin(interaction, interaction.client.config.admin_role)):
        await interaction.followup.send(
            "❌ Only the member who asked for these images, or an admin, can delete them.", ephemeral=True
        )
        return
    assert interaction.message is not None  # a button click always comes with its message
    await interaction.message.delete()
