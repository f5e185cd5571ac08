"""Encoding finished images for storage and chat: PNG bytes without metadata but the text chunks asked for,
identical for identical pixels and text, and a smaller lossy encoding when a platform's upload limit needs one."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Mapping

from PIL import Image

_KEPT_MODES = {"RGB", "RGBA", "L", "LA"}

LOSSY_QUALITIES = (90, 80, 70, 60, 50)
"""Qualities tried, best first, before an image is made smaller."""

MIN_FIT_SIDE = 64
"""`fit_to_limit` never shrinks an image's shorter side below this; a limit that needs it is an error."""


def png_bytes(image: Image.Image, text: Mapping[str, str] | None = None) -> bytes:
    """The image as an optimized PNG carrying its pixels and `text` only (UTF-8 iTXt chunks, e.g. a generated
    image's recipe: jobs.recipe): the image's own EXIF, text chunks, ICC profile and DPI are dropped, so nothing
    else about the machine or the prompt leaks and equal pixels and text always give equal bytes."""
    buffer = io.BytesIO()
    _bare(image).save(buffer, format="PNG", optimize=True)
    plain = buffer.getvalue()
    return with_text(plain, text) if text else plain


_IHDR_END = 8 + 4 + 4 + 13 + 4  # the signature, then IHDR's length, type, 13 bytes of data and CRC


def with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """`png` with an uncompressed iTXt chunk per item of `text` right after its header and every other byte as it
    was: `png_bytes(image)` alone names the pixels (inputs are stored under its sha256, jobs.inputs), whatever text
    and signature the stored file carries."""
    if png[12:16] != b"IHDR":
        raise ValueError("not a PNG: its first chunk is not IHDR")
    chunks = b"".join(
        _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode()) for key, value in text.items()
    )
    return png[:_IHDR_END] + chunks + png[_IHDR_END:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ADDED_CHUNKS = (b"iTXt", b"caBX")  # `with_text`'s text, and the C2PA manifest (jobs.provenance)


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks as (type, data), in order; ValueError when `png` is not a whole PNG."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: no PNG signature")
    found, at = [], len(PNG_SIGNATURE)
    while at < len(png):
        if at + 12 > len(png):
            raise ValueError("not a whole PNG: it ends inside a chunk")
        (length,) = struct.unpack(">I", png[at : at + 4])
        found.append((png[at + 4 : at + 8], png[at + 8 : at + 8 + length]))
        at += 12 + length
    if at != len(png):
        raise ValueError("not a whole PNG: it ends inside a chunk")
    return found


def assemble_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of `chunks` ((type, data) pairs, as `png_chunks` gives them), each with its CRC."""
    return PNG_SIGNATURE + b"".join(_chunk(kind, data) for kind, data in chunks)


def pixels_only(png: bytes) -> bytes:
    """A file Atelier wrote without its text chunks and C2PA manifest: the bytes `png_bytes(image)` gave for its
    pixels, so two files with equal `pixels_only` hold the same pixels, encoded the same way."""
    return assemble_png([(kind, data) for kind, data in png_chunks(png) if kind not in _ADDED_CHUNKS])


def fit_to_limit(image: Image.Image, max_bytes: int, allow_webp: bool = True) -> tuple[bytes, str]:
    """The image encoded in at most `max_bytes`, with its content type: the PNG when it fits; else WebP (JPEG
    where the platform shows no WebP, e.g. Slack) at falling quality, then made smaller until it fits.

    Like `png_bytes`, the result carries pixels only. JPEG has no transparency: it is flattened onto white.
    Raises ValueError when even a shorter side of `MIN_FIT_SIDE` pixels at the lowest quality does not fit.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive (got {max_bytes})")
    png = png_bytes(image)
    if len(png) <= max_bytes:
        return png, "image/png"
    format, content_type = ("WEBP", "image/webp") if allow_webp else ("JPEG", "image/jpeg")
    bare = _bare(image)
    if format == "JPEG" and bare.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", bare.size, "white")
        flat.paste(bare, mask=bare.getchannel("A"))
        bare = flat
    current = bare
    while True:
        for quality in LOSSY_QUALITIES:
            data = _encode(current, format, quality)
            if len(data) <= max_bytes:
                return data, content_type
        smallest = min(MIN_FIT_SIDE, *bare.size)
        if min(current.size) <= smallest:
            raise ValueError(
                f"the image does not fit in {max_bytes} bytes even at {current.width}x{current.height} "
                f"and {format} quality {LOSSY_QUALITIES[-1]}"
            )
        # Bytes shrink about with the pixel count: aim just under the limit, shrink by a tenth at least, and
        # stop at a shorter side of `smallest`.
        scale = max(min(0.9, 0.95 * math.sqrt(max_bytes / len(data))), smallest / min(current.size))
        size = (max(1, round(current.width * scale)), max(1, round(current.height * scale)))
        current = bare.resize(size, Image.Resampling.LANCZOS)


def _bare(image: Image.Image) -> Image.Image:
    """A copy with the pixels only (no EXIF, text, ICC or DPI), in a mode every encoder here takes."""
    if image.mode not in _KEPT_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return Image.frombytes(image.mode, image.size, image.tobytes())


def _encode(image: Image.Image, format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if format == "WEBP":
        image.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
