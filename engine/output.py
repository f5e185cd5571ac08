"""Encoding finished images for storage and chat: PNG bytes without metadata, identical for identical pixels."""

from __future__ import annotations

import io

from PIL import Image

_KEPT_MODES = {"RGB", "RGBA", "L", "LA"}


def png_bytes(image: Image.Image) -> bytes:
    """The image as an optimized PNG carrying pixels only: EXIF, text chunks, ICC profiles and DPI are dropped,
    so nothing about the machine or the prompt leaks and equal pixels always give equal bytes."""
    if image.mode not in _KEPT_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    bare = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
