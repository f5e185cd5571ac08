"""The U, V and F buttons: a new job made from one image of a finished job.

U upscales it (the default upscaler, 4×), V makes variations of it (the source job's prompt, model, steps and
count, a new seed; of an inpainting result, with the default text-to-image model), F restores the faces in it. The source image is read back from the blob store by
(job, index), so the buttons work however old the message is. The click is deferred first (a database and blob
read follow); a request the models' limits refuse (an image too large to upscale again, say) withdraws the
public "thinking…" message and answers ephemerally, as does a click naming an image the safety filter withheld
(it had no button: such a click was made by hand).
"""

from __future__ import annotations

import asyncio
import io
import secrets
from typing import TYPE_CHECKING

import discord
from PIL import Image as PILImage

from bots.discord.launch import defer_status, start_job, withdraw
from bots.discord.safety import withheld
from jobs.retention import expired_words
from jobs.specs import MAX_SEED, Enhance, Upscale, Vary, enhance_spec, upscale_spec, vary_spec
from storage.models import Image, Job

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

TITLES = {"upscale": "Upscale", "vary": "Variations", "faces": "Enhanced faces"}
WITHHELD = "That image was withheld by this server's safety filter; it can't be used."
TEXT_TO_IMAGE_KINDS = frozenset({"imagine", "vary"})  # jobs whose model (and steps) V can use again


async def on_derive(
    interaction: discord.Interaction[AtelierBot], action: str, source: Job | None, index: int
) -> None:
    """`action` on image `index` of `source`, a job of this server (`results` checked it)."""
    message_id = await defer_status(interaction)
    bot = interaction.client
    row = None if source is None else await Image.get_or_none(job_id=source.id, index=index)
    if source is None or row is None:
        await withdraw(
            interaction, (source and expired_words(source)) or "That image is gone; it can no longer be used."
        )
        return
    if await withheld(source, row):
        await withdraw(interaction, WITHHELD)
        return
    data = await bot.config.blobs.get(row.blob_key)
    image = await asyncio.to_thread(_decode, data)
    try:
        spec = _spec(bot, action, source, image, row.blob_key).model_copy(update={"parent": source.id})
    except ValueError as exc:
        await withdraw(interaction, str(exc))
        return
    prompt = source.spec.get("prompt") or ""
    title = f"{TITLES[action]} of image {index + 1}" + (f": {prompt}" if prompt else "")
    await start_job(interaction, message_id, spec, title=title)


def _spec(
    bot: AtelierBot, action: str, source: Job, image: PILImage.Image, key: str
) -> Upscale | Enhance | Vary:
    registry, tiny = bot.config.registry, bot.config.tiny_models
    if action == "upscale":
        return upscale_spec(registry, image=image, tiny=tiny, image_key=key)
    if action == "faces":
        return enhance_spec(registry, image=image, tiny=tiny, image_key=key)
    was = source.spec
    same_model = source.kind in TEXT_TO_IMAGE_KINDS  # an inpainting model cannot vary: the default one does
    return vary_spec(
        registry,
        image=image,
        prompt=was.get("prompt", ""),
        negative=was.get("negative", ""),
        model=was.get("model") if same_model else None,
        steps=was.get("steps") if same_model else None,
        guidance=was.get("guidance") if same_model else None,
        count=was.get("count"),
        tiny=tiny,
        random_seed=secrets.randbelow(MAX_SEED + 1),
        image_key=key,
    )


def _decode(data: bytes) -> PILImage.Image:
    with PILImage.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")
