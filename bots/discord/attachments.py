"""Image files for Discord messages: results that fit the upload limit, and small progress previews.

A result larger than the interaction's `attachment_size_limit` would be refused (40005 Payload Too Large), so it
is re-encoded as WebP at falling quality, then downscaled, until it fits: the user always gets the picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image as PILImage

WEBP_QUALITIES = (90, 80, 65, 50)
DOWNSCALE_STEP = 0.75
MIN_SIDE = 16
PREVIEW_MAX_SIDE = 256
PREVIEW_QUALITY = 70


@dataclass(frozen=True)
class UploadFile:
    filename: str
    data: bytes
    content_type: str


def fit_image(data: bytes, filename: str, limit: int) -> UploadFile:
    """`data` as is when it fits in `limit` bytes, else a WebP (smaller, then downscaled) that does.

    Raises ValueError when even a tiny thumbnail would not fit, which no real limit comes near.
    """
    if len(data) <= limit:
        return UploadFile(filename, data, _content_type(filename))
    stem = PurePath(filename).stem
    with PILImage.open(io.BytesIO(data)) as original:
        image = original.convert("RGBA" if original.has_transparency_data else "RGB")
    while True:
        for quality in WEBP_QUALITIES:
            encoded = _encode(image, "WEBP", quality=quality, method=4)
            if len(encoded) <= limit:
                return UploadFile(f"{stem}.webp", encoded, "image/webp")
        width, height = (round(side * DOWNSCALE_STEP) for side in image.size)
        if min(width, height) < MIN_SIDE:
            raise ValueError(f"{filename} cannot be made to fit in {limit} bytes")
        image = image.resize((width, height), PILImage.Resampling.LANCZOS)


def preview_jpeg(image: PILImage.Image) -> bytes:
    """A small JPEG of a progress preview: at most 256 px a side, a few kilobytes, milliseconds to encode."""
    preview = image.convert("RGB")
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    return _encode(preview, "JPEG", quality=PREVIEW_QUALITY)


def _encode(image: PILImage.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _content_type(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    return {".png": "image/png", ".webp": "image/webp", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        suffix, "application/octet-stream"
    )
