"""Grid tiles show thumbnails, not the full images: a page of 24 full-size SDXL PNGs is tens of megabytes.

A thumbnail (a JPEG at most `SIDE` pixels a side; smaller images keep their size) is made from the stored PNG the
first time a tile asks for it, off the event loop, and kept in the blob store under the image's SHA-256
(`thumbs/<sha256>-<side>.jpg`), so every API process finds it, identical images share one, and it cannot go stale.
"""

from __future__ import annotations

import asyncio
import io

from PIL import Image as PILImage

from jobs.retention import THUMB_SIDE, thumb_key
from storage.blobs import BlobNotFound, BlobStore
from storage.models import Image

SIDE = THUMB_SIDE  # retention deletes thumbnails of this side with their images


def key_of(image: Image) -> str:
    return thumb_key(image.sha256, SIDE)


async def thumbnail(blobs: BlobStore, image: Image) -> bytes:
    """The image's thumbnail, made and stored on first use; BlobNotFound when the image's own bytes are gone."""
    key = key_of(image)
    try:
        return await blobs.get(key)
    except BlobNotFound:
        pass
    data = await asyncio.to_thread(_shrink, await blobs.get(image.blob_key))
    await blobs.put(key, data, "image/jpeg")
    return data


def _shrink(png: bytes) -> bytes:
    with PILImage.open(io.BytesIO(png)) as source:
        image = source.convert("RGB")
    image.thumbnail((SIDE, SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
