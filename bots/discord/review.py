"""`/atelier review`: the server's withheld images (jobs.moderation), for its admins, with Approve and Delete.

The list is ephemeral: up to `PAGE` waiting images, each attached as a spoiler with a row of two buttons.
Approve posts the image where it was asked (the job's thread, or its channel), mentioning the asker; Delete
removes its blob and row. Either is logged with the admin who made it (`/atelier safety review_log:True`,
`atelier admin safety TENANT --review-log`), and a second click on a decided review says who decided it.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bots.discord.admin import admin_only, group
from bots.discord.metering import answering
from jobs import moderation
from storage.models import Job, get_or_create_tenant

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

log = logging.getLogger(__name__)

PAGE = 5  # a message has at most five rows of buttons
REVIEW_TEMPLATE = r"atelier:review:(?P<decision>approve|delete):(?P<review>[0-9]{1,12})"


def review_id(decision: str, review: int) -> str:
    return f"atelier:review:{decision}:{review}"


class ReviewButton(discord.ui.DynamicItem[discord.ui.Button], template=REVIEW_TEMPLATE):
    """Approve or Delete under a withheld image in `/atelier review`; persistent."""

    def __init__(self, decision: str, review: int) -> None:
        style = discord.ButtonStyle.success if decision == "approve" else discord.ButtonStyle.danger
        label = f"{decision.title()} #{review}"
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=review_id(decision, review)))
        self.decision, self.review = decision, review

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ReviewButton:
        return cls(match["decision"], int(match["review"]))

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):
            await on_decision(interaction, self.decision, self.review)


@group.command(name="review", description="Withheld images waiting for review: approve or delete (admins)")
async def review_command(interaction: discord.Interaction[AtelierBot]) -> None:
    if not await admin_only(interaction, "review"):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = interaction.client
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
    waiting = await moderation.pending(tenant, limit=PAGE)
    if not waiting:
        await interaction.edit_original_response(content="No withheld images are waiting for review.")
        return
    view = discord.ui.View(timeout=None)
    files, lines = [], []
    for row, review in enumerate(waiting):
        job = await Job.get_or_none(id=review.job_id)
        prompt = (job.spec.get("prompt") if job else "") or ""
        asker = (job.reply_target or {}).get("data", {}).get("user_id") if job else None
        lines.append(
            f"**#{review.id}** in <#{review.channel}>"
            + (f" by <@{asker}>" if asker else "")
            + f": {prompt[:80]}"
        )
        files.append(
            discord.File(
                _bytes(await bot.config.blobs.get(review.blob_key)), f"SPOILER_review-{review.id}.png"
            )
        )
        for decision in ("approve", "delete"):
            button = ReviewButton(decision, review.id)
            button.item.row = row
            view.add_item(button)
    await interaction.edit_original_response(content="\n".join(lines), attachments=files, view=view)


async def on_decision(
    interaction: discord.Interaction[AtelierBot], decision: str, review_number: int
) -> None:
    if not await admin_only(interaction, "review"):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = interaction.client
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
    try:
        review = await moderation.decide(
            tenant, review_number, decision, reviewer=str(interaction.user.id), blobs=bot.config.blobs
        )
    except moderation.ReviewError as exc:
        await interaction.followup.send(f"⚠️ {exc}", ephemeral=True)
        return
    log.info("discord review %s by %s: %s", review.id, interaction.user.id, review.decision)
    if review.decision == "deleted":
        await interaction.followup.send(f"🗑️ Review #{review.id}: image deleted.", ephemeral=True)
        return
    where = await _post_approved(bot, review)
    await interaction.followup.send(
        f"✅ Review #{review.id}: approved and posted in <#{where}>.", ephemeral=True
    )


async def _post_approved(bot: AtelierBot, review: Any) -> int:
    """Post an approved image where its job was asked (its thread, else its channel); the channel's id."""
    job = await Job.get(id=review.job_id)
    data = (job.reply_target or {}).get("data", {})
    where = int(data.get("thread_id") or data["channel_id"])
    channel = bot.get_channel(where) or await bot.fetch_channel(where)
    asker = data.get("user_id")
    await channel.send(  # type: ignore[union-attr]
        content=(f"<@{asker}> " if asker else "")
        + f"an admin approved your withheld image (review #{review.id}).",
        file=discord.File(_bytes(await bot.config.blobs.get(review.blob_key)), f"{review.job_id}-review.png"),
        allowed_mentions=discord.AllowedMentions(users=True, everyone=False, roles=False),
    )
    return where


def _bytes(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def setup(bot: AtelierBot) -> None:
    bot.add_dynamic_items(ReviewButton)
