"""Input images from Slack messages: pick the image among a message's files and download it, bounded.

Slack serves a file's `url_private_download` only with the bot token (`Authorization: Bearer`, scope
`files:read`). The byte limit is enforced from the file's declared size and again while streaming, so an
oversized or lying file is cut off instead of read into memory; the bytes are then decoded by
`jobs.inputs.read_image` (pixel limits, truncation, decompression bombs) and stored as a blob.
"""

from __future__ import annotations

import asyncio

import aiohttp
from PIL import Image as PILImage

from bots.commands import CommandError
from bots.slack.services import SlackServices
from jobs.inputs import MAX_INPUT_BYTES, InputImageError, read_image, store_input

DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 64 * 1024


def image_file(message: dict) -> dict:
    """The first image among the message's files; a CommandError says what the message has instead."""
    files = [f for f in message.get("files") or [] if f.get("mode") != "tombstone"]
    if not files:
        raise CommandError("That message has no file: use this on a message with an image (PNG or JPEG).")
    for f in files:
        if str(f.get("mimetype", "")).startswith("image/"):
            return f
    first = files[0]
    kind = first.get("mimetype") or first.get("filetype") or "an unknown type"
    raise CommandError(
        f"{first.get('name') or 'That file'} is not an image ({kind}): use this on a message with a PNG or JPEG."
    )


async def download(url: str, token: str, *, name: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The file at `url`, read with the bot token; over `max_bytes` it is refused while streaming."""
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status != 200:
                    raise CommandError(
                        f"I could not download {name} (Slack answered {response.status}): "
                        "check that the app has the files:read scope."
                    )
                if response.content_type == "text/html":  # Slack's sign-in page: the token was not accepted
                    raise CommandError(f"I could not download {name}: the app needs the files:read scope.")
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:  # the declared size lied: stop reading here
                        raise CommandError(f"{name} is larger than the limit of {max_bytes / 2**20:.0f} MiB.")
                    chunks.append(chunk)
                return b"".join(chunks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommandError(f"I could not download {name}: {exc or type(exc).__name__}") from None


async def input_image(
    services: SlackServices, file: dict, token: str, *, max_bytes: int = MAX_INPUT_BYTES
) -> tuple[PILImage.Image, str]:
    """Download, check and store one of a message's files; return the image and its blob key."""
    name = file.get("name") or file.get("title") or "the file"
    declared = file.get("size")
    if isinstance(declared, int) and declared > max_bytes:
        raise CommandError(_too_big(name, declared, max_bytes))
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise CommandError(f"Slack gave me no way to download {name}.")
    data = await download(url, token, name=name, max_bytes=max_bytes)
    try:
        image = await asyncio.to_thread(read_image, data, name=name, max_bytes=max_bytes)
    except InputImageError as exc:
        raise CommandError(str(exc)) from None
    return image, await store_input(services.blobs, image)


def _too_big(name: str, size: int, limit: int) -> str:
    return f"{name} is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB."
