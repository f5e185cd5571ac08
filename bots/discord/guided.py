"""Guided generation in Discord: /imagine with `control`, `control_image`, `sref` or `cref` (or the flags
`--control`, `--control-weight`, `--hires`, `--sw`, `--cw`), `/blend` (2–5 images) and `/describe` (four
prompts, each with a button that runs /imagine with it). The meaning lives in `jobs.guided` and
`jobs.describe`, shared with the CLI and Slack.

Everything that can be refused without the images (a control type the model has no ControlNet for, a weight
out of range, too many images, an attachment Discord says is not an image or too large) is refused before
anything is deferred; the images are downloaded after the deferral, and one that does not decode withdraws it.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from PIL import Image

from bots.commands import CommandError, merge_options, parse_prompt
from bots.discord.describe_rows import DESCRIBE_TEMPLATE
from bots.discord.inputs import AttachmentRef, checked_attachment, input_image, precheck
from bots.discord.launch import defer_status, defer_then_start, refuse, start_job, withdraw
from bots.discord.metering import answering
from bots.discord.permissions import job_here, refuse_foreign
from engine.guided_requests import (
    DEFAULT_REFERENCE_WEIGHT,
    MAX_BLEND_IMAGES,
    MIN_BLEND_IMAGES,
    scales_hires,
)
from jobs.describe import describe_spec
from jobs.guided import Guided, GuidedReference, guided_spec
from jobs.ownership import ForeignJob
from jobs.specs import MAX_SEED, imagine_spec

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

GUIDANCE_OPTIONS = ("control", "control_weight", "hires", "sref_weight", "cref_weight")
_PLACEHOLDER = Image.new("RGB", (64, 64))  # stands in for an image not downloaded yet, while checking


def wants_guidance(merged: dict[str, object], attachments: dict[str, AttachmentRef | None]) -> bool:
    """Whether the request is a guided one; `--hires 1` (the hires fix off) alone leaves it plain."""
    asked = [name for name in GUIDANCE_OPTIONS if merged.get(name) is not None]
    return any(name != "hires" or scales_hires(merged["hires"]) for name in asked) or any(
        attachments.get(name) for name in ("control_image", "sref", "cref")
    )


async def start_guided(
    interaction: discord.Interaction[AtelierBot],
    prompt: str,
    options: dict[str, object],
    attachments: dict[str, AttachmentRef | None],
) -> None:
    """/imagine with guidance: `attachments` maps image (the control's source), control_image, sref, cref."""
    bot = interaction.client
    try:
        parsed = parse_prompt(prompt)
        merged = merge_options(parsed, options)
        if merged.get("lora"):
            raise CommandError("LoRAs do not combine with control or references here: remove --lora")
        source = attachments.get("control_image") or attachments.get("image")
        if attachments.get("control_image") and attachments.get("image"):
            raise CommandError("attach the image to follow or the control image itself, not both")
        if merged.get("control") and source is None:
            raise CommandError(f"control {merged['control']} needs an image: attach one")
        for ref in filter(None, attachments.values()):
            precheck(ref)
        roles = [
            (attachments[name], role, float(merged.get(f"{name}_weight") or DEFAULT_REFERENCE_WEIGHT))  # type: ignore[arg-type]
            for name, role in (("sref", "style"), ("cref", "content"))
            if attachments.get(name)
        ]
        given = attachments.get("control_image") is not None

        def build(control_image: Image.Image | None, references: list) -> Guided:
            return guided_spec(
                bot.config.registry,
                prompt=parsed.prompt,
                negative=str(merged.get("negative") or ""),
                model=merged.get("model"),  # type: ignore[arg-type]
                size=merged.get("size"),  # type: ignore[arg-type]
                aspect=merged.get("aspect"),  # type: ignore[arg-type]
                steps=merged.get("steps"),  # type: ignore[arg-type]
                guidance=merged.get("guidance"),  # type: ignore[arg-type]
                seed=merged.get("seed"),  # type: ignore[arg-type]
                count=merged.get("count"),  # type: ignore[arg-type]
                tiny=bot.config.tiny_models,
                random_seed=secrets.randbelow(MAX_SEED + 1),
                control=merged.get("control"),  # type: ignore[arg-type]
                control_image=control_image,
                control_given=given,
                control_weight=float(merged.get("control_weight") or 1.0),  # type: ignore[arg-type]
                references=references,
                hires=merged.get("hires"),  # type: ignore[arg-type]
            )

        build(None if source is None else _PLACEHOLDER, [(_PLACEHOLDER, role, w) for _, role, w in roles])
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return

    async def from_uploads() -> Guided:
        control_image, control_key = (
            (None, None) if source is None else await input_image(bot.config.blobs, source)
        )
        stored = [(await input_image(bot.config.blobs, ref), role, weight) for ref, role, weight in roles]
        spec = build(control_image, [(image, role, weight) for (image, _), role, weight in stored])
        return with_keys(spec, control_key, stored)

    await defer_then_start(interaction, from_uploads, title=parsed.prompt)


def with_keys(spec: Guided, control_key: str | None, stored: list) -> Guided:
    from engine.guided_requests import pixel_sha256

    references = [
        GuidedReference(image=key, role=role, weight=weight, sha256=pixel_sha256(image))
        for (image, key), role, weight in stored
    ]
    return spec.model_copy(update={"control_image": control_key, "references": references})


@app_commands.command(name="blend", description="Combine 2 to 5 images into new ones")
@app_commands.guild_only()
@app_commands.describe(prompt="What the result should show too (optional)")
async def blend_command(
    interaction: discord.Interaction[AtelierBot],
    image1: discord.Attachment,
    image2: discord.Attachment,
    image3: discord.Attachment | None = None,
    image4: discord.Attachment | None = None,
    image5: discord.Attachment | None = None,
    prompt: str = "",
) -> None:
    bot = interaction.client
    refs = [AttachmentRef.of(a) for a in (image1, image2, image3, image4, image5) if a is not None]
    try:
        parsed = parse_prompt(prompt, allow_empty=True)
        merged = merge_options(parsed, {})
        if not MIN_BLEND_IMAGES <= len(refs) <= MAX_BLEND_IMAGES:
            raise CommandError(f"a blend takes {MIN_BLEND_IMAGES} to {MAX_BLEND_IMAGES} images")
        for ref in refs:
            precheck(ref)

        def build(images: list[Image.Image]) -> Guided:
            return guided_spec(
                bot.config.registry,
                prompt=parsed.prompt,
                model=merged.get("model"),  # type: ignore[arg-type]
                seed=merged.get("seed"),  # type: ignore[arg-type]
                count=merged.get("count"),  # type: ignore[arg-type]
                tiny=bot.config.tiny_models,
                random_seed=secrets.randbelow(MAX_SEED + 1),
                references=[(image, "blend", DEFAULT_REFERENCE_WEIGHT) for image in images],
            )

        build([_PLACEHOLDER] * len(refs))
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return

    async def from_uploads() -> Guided:
        stored = [
            (await input_image(bot.config.blobs, ref), "blend", DEFAULT_REFERENCE_WEIGHT) for ref in refs
        ]
        return with_keys(build([image for (image, _), _, _ in stored]), None, stored)

    await defer_then_start(interaction, from_uploads, title=parsed.prompt or "blend")


@app_commands.command(name="describe", description="Four prompts that would make an image like this one")
@app_commands.guild_only()
async def describe_command(interaction: discord.Interaction[AtelierBot], image: discord.Attachment) -> None:
    bot = interaction.client
    ref = await checked_attachment(interaction, image)
    if ref is None:
        return

    async def from_upload():
        picture, key = await input_image(bot.config.blobs, ref)
        return describe_spec(bot.config.registry, image=picture, tiny=bot.config.tiny_models, image_key=key)

    await defer_then_start(interaction, from_upload, title=f"describe {ref.filename}")


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button], template=DESCRIBE_TEMPLATE):
    """A prompt's button under a /describe result: /imagine with that prompt, as a new job."""

    def __init__(self, item: discord.ui.Button, job_id: str, index: int) -> None:
        super().__init__(item)
        self.job_id, self.index = job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DescribeButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, match["job_id"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):
            try:
                job = await job_here(interaction, self.job_id)
            except ForeignJob:
                await refuse_foreign(interaction)
                return
            message_id = await defer_status(interaction)
            prompts = [] if job is None else job.spec.get("prompts", [])
            if not 0 <= self.index < len(prompts):
                await withdraw(interaction, "That description is gone; use /describe again.")
                return
            bot = interaction.client
            try:
                spec = imagine_spec(
                    bot.config.registry,
                    prompt=prompts[self.index],
                    tiny=bot.config.tiny_models,
                    random_seed=secrets.randbelow(MAX_SEED + 1),
                )
            except ValueError as exc:
                await withdraw(interaction, str(exc))
                return
            await start_job(interaction, message_id, spec, title=spec.prompt)


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(blend_command)
    bot.tree.add_command(describe_command)
    bot.add_dynamic_items(DescribeButton)
