"""Input images from Discord attachments: checked, downloaded at once (CDN URLs expire) and stored as blobs.

An attachment is refused before any byte is read when Discord says it is not an image or is over the byte
limit, and while streaming when it turns out larger than it said. Downloads come from Discord's CDN only (and the
configured API base's origin), redirects to another host are refused (`bots.fetch`); the bytes are then decoded by
`jobs.inputs.read_image` (pixel limit, truncation, decompression bombs) and stored content-addressed, so a job
carries a blob key. Every refusal is an `InputImageError` whose message can be shown as it is.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import PurePath
from urllib.parse import urlsplit

import discord
from PIL import Image as PILImage

from bots.discord.launch import refuse
from bots.fetch import BadStatus, FetchError, NotAllowed, Sources, discord_sources, fetch
from jobs.inputs import MAX_INPUT_BYTES, MAX_INPUT_PIXELS, InputImageError, read_image, store_input
from storage.blobs import BlobStore

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class AttachmentRef:
    """What Discord says about an attachment, from an interaction option or a fetched message."""

    filename: str
    url: str
    size: int | None
    content_type: str | None

    @classmethod
    def of(cls, attachment: discord.Attachment) -> AttachmentRef:
        return cls(attachment.filename, attachment.url, attachment.size, attachment.content_type)

    @classmethod
    def from_data(cls, data: dict) -> AttachmentRef:
        size = data.get("size")
        return cls(
            str(data.get("filename") or "the file"),
            str(data.get("url") or data.get("proxy_url") or ""),
            size if isinstance(size, int) else None,
            data.get("content_type"),
        )

    @property
    def looks_like_image(self) -> bool:
        if self.content_type:
            return self.content_type.startswith("image/")
        return PurePath(self.filename).suffix.lower() in IMAGE_SUFFIXES


def first_image(message: dict) -> AttachmentRef | None:
    """The first image among a fetched message's attachments, or None when it has none."""
    for data in message.get("attachments") or []:
        ref = AttachmentRef.from_data(data)
        if ref.looks_like_image:
            return ref
    return None


def precheck(ref: AttachmentRef, *, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Refuse, without downloading, what Discord itself says is not an image or is too large."""
    if not ref.looks_like_image:
        raise InputImageError(
            f"{ref.filename} is not an image ({ref.content_type or 'unknown type'}): attach a PNG, JPEG or WebP"
        )
    if ref.size is not None and ref.size > max_bytes:
        raise InputImageError(
            f"{ref.filename} is {ref.size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB"
        )


async def checked_attachment(
    interaction: discord.Interaction, attachment: discord.Attachment, *, command: str | None = None
) -> AttachmentRef | None:
    """The attachment of a one-image command, once `precheck` passes; None after refusing the interaction (an
    ephemeral ❌ naming the problem, nothing deferred or enqueued). With `command` (its name without the slash), a
    direct message is refused first: "/command works in a server channel, not in direct messages."."""
    if command is not None and interaction.guild_id is None:
        await refuse(interaction, f"/{command} works in a server channel, not in direct messages.")
        return None
    ref = AttachmentRef.of(attachment)
    try:
        precheck(ref)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return None
    return ref


async def download(ref: AttachmentRef, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The attachment's bytes, from Discord's CDN only (`bots.fetch`, no redirect to another host); a file that
    grows past `max_bytes` while streaming is cut off and refused."""
    try:
        return (await fetch(ref.url, sources(), name=ref.filename, max_bytes=max_bytes)).data
    except NotAllowed as exc:
        log.warning(
            "refused to download %s from %s: not one of Discord's CDN hosts", ref.filename, _host(ref.url)
        )
        raise InputImageError(str(exc)) from None
    except BadStatus as exc:
        raise InputImageError(f"{exc}: attach it again") from None
    except FetchError as exc:
        raise InputImageError(str(exc)) from None


def sources() -> Sources:
    """Discord's CDN hosts, and the origin of the API base the bot talks to (`configure_endpoints` sets it from
    `ATELIER_DISCORD_API_BASE`: an emulator or proxy that serves attachments too)."""
    return discord_sources(discord.http.Route.BASE)


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


async def input_image(
    blobs: BlobStore,
    ref: AttachmentRef,
    *,
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> tuple[PILImage.Image, str]:
    """Check, download, decode and store one attachment; return the RGB image and its blob key."""
    precheck(ref, max_bytes=max_bytes)
    data = await download(ref, max_bytes=max_bytes)
    image = await asyncio.to_thread(
        read_image, data, name=ref.filename, max_bytes=max_bytes, max_pixels=max_pixels
    )
    return image, await store_input(blobs, image)
