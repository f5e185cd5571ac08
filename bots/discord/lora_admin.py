"""`/atelier lora train|list|delete`: a server's own LoRAs, trained from chat (issue 7).

`train name trigger [zip] [image1…image10] [steps]` takes a zip of images (with optional `.txt` captions beside
them), or up to ten attached images, which are zipped here (`jobs.datasets.zip_folder`). Only admins (Manage
Server, or the configured admin role) may train or delete; anyone may list, since members need the names to
use them. What needs no download (not an admin, no dataset, a zip and images both, a file that is not a zip or
not an image, too large) is refused at once, ephemerally. Then the request is deferred publicly (its message
becomes the job's status, with a thread for progress), the files are downloaded, and
`jobs.training.request_training` checks the name, the trigger, the model and the dataset itself (a zip bomb, a
`../evil.png` member, too few images: `jobs.datasets.DatasetError`, whose message is shown as it is) before
storing or charging anything; a refusal withdraws the public message for an ephemeral answer.

The job runs on the training queue (`ATELIER_TRAIN_QUEUE_NAME`); the worker's Discord replier shows the step
and the loss on the status message, then posts the sample images in the thread with how to use the LoRA.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord.admin import admin_only, group
from bots.discord.choices import choices
from bots.discord.inputs import AttachmentRef, download, precheck
from bots.discord.launch import Refused, defer_status, refuse, start
from jobs.datasets import MAX_MEMBER_BYTES, zip_folder
from jobs.queue import Enqueued
from jobs.specs import ReplyTarget
from jobs.training import delete_lora, list_loras, request_training
from storage.lora_models import LoraModel
from storage.models import Tenant, User, get_or_create_tenant

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

MAX_ZIP_BYTES = 200 * 2**20  # the upload; what it expands to is bounded by jobs.datasets
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/octet-stream"})
MAX_STEPS = 10_000
MAX_ATTACHED_IMAGES = 10

lora = app_commands.Group(name="lora", description="This server's LoRAs: train, list, delete")


def dataset_refs(zip_file: AttachmentRef | None, images: list[AttachmentRef]) -> None:
    """ValueError for a request whose files cannot be a dataset, told from what Discord says of them."""
    if zip_file is None and not images:
        raise ValueError("attach the training images: a zip, or up to 10 images (image1 … image10)")
    if zip_file is not None and images:
        raise ValueError("attach a zip or images, not both")
    if zip_file is not None:
        if PurePath(zip_file.filename).suffix.lower() != ".zip" or (
            zip_file.content_type and zip_file.content_type not in ZIP_TYPES
        ):
            raise ValueError(f"{zip_file.filename} is not a zip file: attach a .zip of images")
        if zip_file.size is not None and zip_file.size > MAX_ZIP_BYTES:
            raise ValueError(
                f"{zip_file.filename} is {zip_file.size / 2**20:.1f} MiB; the limit is {MAX_ZIP_BYTES / 2**20:.0f} MiB"
            )
    for ref in images:
        precheck(ref, max_bytes=MAX_MEMBER_BYTES)


async def dataset_zip(zip_file: AttachmentRef | None, images: list[AttachmentRef]) -> bytes:
    """The zip as uploaded, or the attached images zipped (numbered, so two `image.png` stay two files)."""
    if zip_file is not None:
        return await download(zip_file, max_bytes=MAX_ZIP_BYTES)
    files = [(ref, await download(ref, max_bytes=MAX_MEMBER_BYTES)) for ref in images]
    return await asyncio.to_thread(_zip_images, files)


def _zip_images(files: list[tuple[AttachmentRef, bytes]]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="atelier-discord-dataset-") as folder:
        for number, (ref, data) in enumerate(files, start=1):
            name = PurePath(ref.filename).name or "image.png"
            (Path(folder) / f"{number:02d}-{name}").write_bytes(data)
        return zip_folder(Path(folder))


@lora.command(name="train", description="Train a LoRA on a zip or up to 10 images (admins)")
@app_commands.rename(dataset="zip")
@app_commands.describe(
    name="Its name, used as --lora NAME:0.8 (letters, digits, - and _)",
    trigger="The word that calls it up in prompts; the caption of images without a .txt",
    dataset="A zip of 3 to 200 images, with optional NAME.txt captions beside them",
    steps="Training steps (default: the model family's, e.g. 1500 for SD 1.5)",
    **{f"image{i}": "A training image" for i in range(1, MAX_ATTACHED_IMAGES + 1)},
)
async def train_command(
    interaction: discord.Interaction[AtelierBot],
    name: str,
    trigger: str,
    dataset: discord.Attachment | None = None,
    steps: app_commands.Range[int, 1, MAX_STEPS] | None = None,
    image1: discord.Attachment | None = None,
    image2: discord.Attachment | None = None,
    image3: discord.Attachment | None = None,
    image4: discord.Attachment | None = None,
    image5: discord.Attachment | None = None,
    image6: discord.Attachment | None = None,
    image7: discord.Attachment | None = None,
    image8: discord.Attachment | None = None,
    image9: discord.Attachment | None = None,
    image10: discord.Attachment | None = None,
) -> None:
    bot = interaction.client
    if not await admin_only(interaction, "lora train"):
        return
    attached = (image1, image2, image3, image4, image5, image6, image7, image8, image9, image10)
    zip_ref = None if dataset is None else AttachmentRef.of(dataset)
    images = [AttachmentRef.of(a) for a in attached if a is not None]
    try:
        dataset_refs(zip_ref, images)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    message_id = await defer_status(interaction)

    async def submit(tenant: Tenant, user: User, request_id: str, reply_target: ReplyTarget) -> Enqueued:
        try:
            return await request_training(
                bot.config.redis,
                bot.config.blobs,
                bot.config.registry,
                tenant=tenant,
                user=user,
                name=name,
                trigger=trigger,
                dataset_zip=await dataset_zip(zip_ref, images),
                request_id=request_id,
                reply_target=reply_target,
                queue_name=bot.config.train_queue_name,
                tiers=bot.config.tiers,
                tiny=bot.config.tiny_models,
                steps=steps,
            )
        except ValueError as exc:  # DatasetError, InputImageError, a name taken: said as they are
            raise Refused(str(exc)) from None

    await start(interaction, message_id, submit, title=f"LoRA {name} (trigger: {trigger})")


@lora.command(name="list", description="This server's LoRAs and whether they are ready")
async def list_command(interaction: discord.Interaction[AtelierBot]) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    tenant = await _tenant(interaction)
    rows = await list_loras(tenant)
    lines = [
        f"`{row.name}` · {row.status.value} · {row.base_model} · trigger `{row.trigger}` · {row.steps} steps"
        for row in rows
    ]
    text = (
        "\n".join(lines)
        if lines
        else "This server has no LoRAs yet: an admin can train one with /atelier lora train."
    )
    await interaction.edit_original_response(content=text[:2000])


@lora.command(name="delete", description="Delete one of this server's LoRAs and its files (admins)")
@app_commands.describe(name="The LoRA's name")
async def delete_command(interaction: discord.Interaction[AtelierBot], name: str) -> None:
    bot = interaction.client
    if not await admin_only(interaction, "lora delete"):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    tenant = await _tenant(interaction)
    row = await LoraModel.get_or_none(tenant=tenant, name=name)
    if row is None:
        names = [r.name for r in await list_loras(tenant)]
        known = f"; its LoRAs: {', '.join(names)}" if names else ": it has none"
        await interaction.edit_original_response(content=f"❌ This server has no LoRA named `{name}`{known}.")
        return
    await delete_lora(bot.config.blobs, row)
    await interaction.edit_original_response(content=f"🗑️ LoRA `{name}` deleted.")


@delete_command.autocomplete("name")
async def _names(
    interaction: discord.Interaction[AtelierBot], current: str
) -> list[app_commands.Choice[str]]:
    tenant = await Tenant.get_or_none(platform="discord", external_id=str(interaction.guild_id))
    return choices([r.name for r in await list_loras(tenant)] if tenant else [], current)


async def _tenant(interaction: discord.Interaction) -> Tenant:
    guild = interaction.guild
    return await get_or_create_tenant("discord", str(interaction.guild_id), guild.name if guild else "")


def setup(bot: AtelierBot) -> None:
    """`/atelier lora …`: a subgroup of the admin group (registered with it)."""
    group.add_command(lora)
