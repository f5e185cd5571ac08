"""Input files from Slack: pick the images among a message's files (or find a file by its permalink), and
download them, bounded.

Slack serves a file's `url_private_download` only with the bot token (`Authorization: Bearer`, scope
`files:read`). That URL is whatever `files.info` says, which for an external file (a remote file, Google Drive)
is another host: downloads go through `bots.fetch`, which fetches from Slack's file servers (and the configured
API base's origin) only, follows no redirect elsewhere, and so sends the token nowhere else. The byte limit is enforced from the file's declared size and again while streaming, so an
oversized or lying file is cut off instead of read into memory; the bytes are then decoded by
`jobs.inputs.read_image` (pixel limits, truncation, decompression bombs) and stored as a blob.
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import urlsplit

from PIL import Image as PILImage
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.fetch import BadStatus, FetchError, NotAllowed, fetch, slack_sources
from bots.slack.services import SlackServices
from jobs.inputs import MAX_INPUT_BYTES, InputImageError, read_image, store_input
from jobs.text import shown

log = logging.getLogger(__name__)
FILE_ID = re.compile(r"/files(?:-pri)?/[^/]+/(F[A-Z0-9]+)")
COPY_LINK = "(in the file's menu: *Copy link*)"


def image_file(message: dict) -> dict:
    """The first image among the message's files; a CommandError says what the message has instead."""
    return image_files(message)[0]


def image_files(message: dict) -> list[dict]:
    """The message's images, in order (at least one); a CommandError says what the message has instead."""
    files = [f for f in message.get("files") or [] if f.get("mode") != "tombstone"]
    if not files:
        raise CommandError("That message has no file: use this on a message with an image (PNG or JPEG).")
    images = [f for f in files if is_image(f)]
    if images:
        return images
    first = files[0]
    kind = _one_line(first.get("mimetype") or first.get("filetype") or "an unknown type")
    name = display_name(first) if first.get("name") or first.get("title") else "That file"
    raise CommandError(f"{name} is not an image ({kind}): use this on a message with a PNG or JPEG.")


def is_image(file: dict) -> bool:
    return str(file.get("mimetype", "")).startswith("image/")


def file_id(link: str) -> str:
    """The file id in a Slack file permalink (angle brackets, as Slack escapes links, are allowed)."""
    url = link.strip().strip("<>").split("|", 1)[0]
    match = FILE_ID.search(url)
    if match is None:
        raise CommandError(f"{shown(url) if url else 'That'} is not a link to a file in Slack {COPY_LINK}.")
    return match[1]


async def linked_file(client: AsyncWebClient, link: str) -> dict:
    """The file object (`files.info`) of the file a permalink names; a CommandError when Slack will not say."""
    return await file_info(client, file_id(link))


async def file_info(client: AsyncWebClient, file: str) -> dict:
    """`files.info` of file id `file`; a CommandError with Slack's reason when the app cannot see it."""
    try:
        return (await client.files_info(file=file))["file"]
    except SlackApiError as exc:
        error = exc.response.get("error", "")
        raise CommandError(
            f"I can't open that file ({error}): it must be shared in a channel I'm in."
        ) from None


def check_declared_size(file: dict, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Refuse a file whose declared size is over the limit, before anything is downloaded."""
    declared = file.get("size")
    if isinstance(declared, int) and declared > max_bytes:
        raise CommandError(_too_big(display_name(file), declared, max_bytes))


async def download(url: str, client: AsyncWebClient, *, name: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The file at `url`, read with the bot token from Slack's file servers only (`bots.fetch`); over
    `max_bytes` it is refused while streaming."""
    sources = slack_sources(client.base_url)
    try:
        download = await fetch(url, sources, name=name, max_bytes=max_bytes, token=client.token or "")
    except NotAllowed as exc:
        log.warning(
            "refused to download %s from %s: not one of Slack's file servers", name, urlsplit(url).hostname
        )
        raise CommandError(str(exc)) from None
    except BadStatus as exc:
        raise CommandError(f"{exc}: check that the app has the files:read scope.") from None
    except FetchError as exc:
        raise CommandError(str(exc)) from None
    if download.content_type == "text/html":  # Slack's sign-in page: the token was not accepted
        raise CommandError(f"I could not download {name}: the app needs the files:read scope.")
    return download.data


async def file_bytes(file: dict, client: AsyncWebClient, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a Slack file object, downloaded with the bot token; over `max_bytes` refused."""
    check_declared_size(file, max_bytes)
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise CommandError(f"Slack gave me no way to download {display_name(file)}.")
    return await download(url, client, name=display_name(file), max_bytes=max_bytes)


async def fetch_image(
    file: dict, client: AsyncWebClient, *, max_bytes: int = MAX_INPUT_BYTES
) -> PILImage.Image:
    """Download and decode one image file (pixel limits, truncation, bombs); nothing is stored yet."""
    data = await file_bytes(file, client, max_bytes=max_bytes)
    try:
        return await asyncio.to_thread(read_image, data, name=display_name(file), max_bytes=max_bytes)
    except InputImageError as exc:
        raise CommandError(str(exc)) from None


async def input_image(
    services: SlackServices, file: dict, client: AsyncWebClient, *, max_bytes: int = MAX_INPUT_BYTES
) -> tuple[PILImage.Image, str]:
    """Download, check and store one of a message's files; return the image and its blob key."""
    image = await fetch_image(file, client, max_bytes=max_bytes)
    return image, await store_input(services.blobs, image)


def display_name(file: dict) -> str:
    """The file's name for a message: on one line (a name may hold a line break), at most 80 characters."""
    return _one_line(file.get("name") or file.get("title") or "the file")


def _one_line(text: object, limit: int = 80) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _too_big(name: str, size: int, limit: int) -> str:
    return f"{name} is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB."
