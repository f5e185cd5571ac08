"""`/upscale image [scale] [faces]`: enlarge an attached image 2× or 4×, optionally restoring faces too.

What Discord says about the attachment (not an image, over the byte limit) is checked before anything else and
refused ephemerally. A plausible one is deferred publicly at once, then downloaded (CDN URLs expire), decoded
with the pixel limit and checked against the upscaler's limits; a refusal then withdraws the public message
and answers ephemerally (see `launch.withdraw`): nothing is enqueued or charged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord.inputs import checked_attachment, input_image
from bots.discord.launch import defer_then_start
from jobs.specs import Enhance, Upscale, enhance_spec, upscale_spec

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from bots.discord.client import AtelierBot


def build_spec(
    bot: AtelierBot, image: PILImage.Image, key: str, scale: int | None, faces: bool
) -> Upscale | Enhance:
    """The upscale (or, with `faces`, face restoration after upscaling) of a stored image; ValueError if too big."""
    registry, tiny = bot.config.registry, bot.config.tiny_models
    if faces:
        return enhance_spec(registry, image=image, upscale=scale or 4, tiny=tiny, image_key=key)
    return upscale_spec(registry, image=image, scale=scale, tiny=tiny, image_key=key)


@app_commands.command(name="upscale", description="Upscale an image 2× or 4×, optionally restoring faces")
@app_commands.guild_only()
@app_commands.describe(
    image="The image to upscale (PNG, JPEG or WebP)",
    scale="How much larger (default 4×)",
    faces="Also restore the faces in it",
)
@app_commands.choices(
    scale=[app_commands.Choice(name="2×", value=2), app_commands.Choice(name="4×", value=4)]
)
async def upscale_command(
    interaction: discord.Interaction[AtelierBot],
    image: discord.Attachment,
    scale: int | None = None,
    faces: bool = False,
) -> None:
    ref = await checked_attachment(interaction, image, command="upscale")
    if ref is None:
        return
    bot = interaction.client

    async def from_upload() -> Upscale | Enhance:
        picture, key = await input_image(bot.config.blobs, ref)
        return build_spec(bot, picture, key, scale, faces)

    what = "Upscale and enhanced faces" if faces else "Upscale"
    await defer_then_start(interaction, from_upload, title=f"{what} of {ref.filename}")


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(upscale_command)
