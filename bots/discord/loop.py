"""The editing loop's buttons under a single image: Vary (Subtle/Strong), Upscale (Subtle/Creative), Zoom Out
1.5×/2×/Custom, Make Square and pan ⬅️➡️⬆️⬇️ (what each means: `jobs.editing`).

A click names (action, job, image) in its custom id, so the buttons survive restarts. The job must be this
server's (`job_here`: another server's is refused before anything else happens). Custom Zoom always opens a
modal for its factor and the prompt; with the member's remix mode on (`/settings`), vary, zoom and pan open one
too, with the prompt (and the strength for a variation) to edit. Every field is checked before anything is
queued; a refusal after the deferral withdraws the "thinking…" message for an ephemeral answer. An open modal
lives in the bot's memory (15 minutes): after a restart, click the button again.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
from typing import TYPE_CHECKING, Any

import discord
from PIL import Image as PILImage

from bots.discord.components import LOOP_TEMPLATE, modal_id
from bots.discord.launch import defer_status, refuse, start_job, withdraw
from bots.discord.metering import answering
from bots.discord.permissions import job_here, refuse_foreign
from bots.discord.safety import withheld
from engine.edit_requests import DEFAULT_VARIATION_STRENGTH
from jobs.editing import (
    LOOP,
    REMIX_TITLES,
    VARY_STRENGTHS,
    Lineage,
    loop_spec,
    parse_strength,
    parse_zoom,
    reroll_spec,
)
from jobs.ownership import ForeignJob
from jobs.retention import expired_words
from jobs.specs import MAX_PROMPT_CHARS, MAX_SEED
from storage.models import Image, Job

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

GONE = "That image is gone (its job expired or was deleted); it can no longer be used."
WITHHELD = "That image was withheld by this server's safety filter; it can't be used."


class LoopButton(discord.ui.DynamicItem[discord.ui.Button], template=LOOP_TEMPLATE):
    """Any editing-loop button; the worker built the message (`components.loop_rows`)."""

    def __init__(self, item: discord.ui.Button, action: str, job_id: str, index: int) -> None:
        super().__init__(item)
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> LoopButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, match["action"], match["job_id"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):
            await on_loop_button(interaction, self.action, self.job_id, self.index)


async def on_loop_button(
    interaction: discord.Interaction[AtelierBot], action: str, job_id: str, index: int
) -> None:
    try:
        job = await job_here(interaction, job_id)
    except ForeignJob:
        await refuse_foreign(interaction)
        return
    remix = await remix_on(interaction)
    if action == "zoom_custom" or (remix and LOOP[action].remix):
        if job is None or job.images_expired_at is not None:  # no modal for an image that is no more
            await refuse(interaction, (job and expired_words(job)) or GONE)
            return
        await interaction.response.send_modal(RemixModal(action, job, index))
        return
    await start_loop_job(interaction, action, job, index)


async def remix_on(interaction: discord.Interaction[AtelierBot]) -> bool:
    """Whether the clicking member has remix mode on in this server (`/settings`)."""
    from storage.settings import settings_for

    settings = await settings_for("discord", str(interaction.guild_id), str(interaction.user.id))
    return settings is not None and settings.remix


async def start_loop_job(
    interaction: discord.Interaction[AtelierBot],
    action: str,
    source: Job | None,
    index: int,
    *,
    prompt: str | None = None,
    factor: float | None = None,
    strength: float | None = None,
) -> None:
    """Defer, read the source image back, build the action's spec and start it; any problem withdraws."""
    message_id = await defer_status(interaction)
    bot = interaction.client
    row = None if source is None else await Image.get_or_none(job_id=source.id, index=index)
    if source is None or row is None:
        await withdraw(interaction, (source and expired_words(source)) or GONE)
        return
    if await withheld(source, row):
        await withdraw(interaction, WITHHELD)
        return
    image = await asyncio.to_thread(_decode, await bot.config.blobs.get(row.blob_key))
    try:
        spec = loop_spec(
            bot.config.registry,
            action,
            image=image,
            lineage=Lineage.of(source.id, source.spec, row.seed),
            prompt=prompt,
            factor=factor,
            strength=strength,
            tiny=bot.config.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            image_key=row.blob_key,
        )
    except ValueError as exc:
        await withdraw(interaction, str(exc))
        return
    shown_prompt = spec.prompt if hasattr(spec, "prompt") else source.spec.get("prompt") or ""
    title = f"{REMIX_TITLES[action]} of image {index + 1}" + (f": {shown_prompt}" if shown_prompt else "")
    await start_job(interaction, message_id, spec, title=title)


class RemixModal(discord.ui.Modal):
    """The prompt (and a variation's strength, or Custom Zoom's factor) to edit before the job is queued. Its
    custom id names the action and image, like the button's."""

    def __init__(self, action: str, source: Job, index: int) -> None:
        super().__init__(
            title=REMIX_TITLES[action][:45], custom_id=modal_id(action, source.id, index), timeout=900
        )
        self.action, self.source_id, self.index = action, source.id, index
        self.prompt = discord.ui.TextInput(
            label="Prompt",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=(source.spec.get("prompt") or "")[:MAX_PROMPT_CHARS],
            required=False,
            max_length=MAX_PROMPT_CHARS,
        )
        self.add_item(self.prompt)
        self.extra: discord.ui.TextInput | None = None
        if action.startswith("vary"):
            strength = VARY_STRENGTHS.get(action.removeprefix("vary_"), DEFAULT_VARIATION_STRENGTH)
            self.extra = discord.ui.TextInput(
                label="Strength (above 0, at most 1)",
                custom_id="extra",
                default=f"{strength:g}",
                max_length=10,
            )
        elif action == "zoom_custom":
            self.extra = discord.ui.TextInput(
                label="Zoom out factor (1.1 to 2)", custom_id="extra", default="1.5", max_length=10
            )
        if self.extra is not None:
            self.add_item(self.extra)

    async def on_submit(self, interaction: discord.Interaction[AtelierBot]) -> None:  # type: ignore[override]
        with answering(interaction):
            await on_modal_submit(
                interaction,
                self.action,
                self.source_id,
                self.index,
                self.prompt.value,
                None if self.extra is None else self.extra.value,
            )


async def on_modal_submit(
    interaction: discord.Interaction[AtelierBot],
    action: str,
    job_id: str,
    index: int,
    prompt: str,
    extra: str | None,
) -> None:
    """Check the modal's fields (nothing is deferred or queued for a bad one), then start the job."""
    if action not in LOOP and action not in ("reroll", "vary"):
        await refuse(interaction, f"unknown action {action[:30]!r}")
        return
    options: dict[str, Any] = {"prompt": prompt.strip()}
    try:
        if action.startswith("vary") and extra is not None:
            options["strength"] = parse_strength(extra)
        elif action == "zoom_custom":
            options["factor"] = parse_zoom(extra or "")
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    try:
        job = await job_here(interaction, job_id)
    except ForeignJob:
        await refuse_foreign(interaction)
        return
    if action == "reroll":
        await start_reroll(interaction, job, options["prompt"])
        return
    await start_loop_job(interaction, action, job, index, **options)


async def start_reroll(
    interaction: discord.Interaction[AtelierBot], job: Job | None, prompt: str | None
) -> None:
    """Reroll (the same request, a new seed), with the prompt a remix modal gave."""
    from bots.discord.results import SEEDED
    from bots.discord.status import title_of

    message_id = await defer_status(interaction)
    if job is None or job.kind not in SEEDED:
        await withdraw(interaction, "That job is gone, or has no seed to change; use /imagine again.")
        return
    try:
        spec = reroll_spec(
            SEEDED[job.kind], job.spec, prompt=prompt, random_seed=secrets.randbelow(MAX_SEED + 1)
        )
    except ValueError as exc:
        await withdraw(interaction, str(exc))
        return
    title = getattr(spec, "prompt", "") or title_of(job)
    await start_job(interaction, message_id, spec, title=title)  # type: ignore[arg-type]


def _decode(data: bytes) -> PILImage.Image:
    with PILImage.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")
