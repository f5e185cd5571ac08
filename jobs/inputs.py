"""Input images: read what people upload safely, and store it so a job carries a blob key, never bytes.

Front-ends call `read_image` as soon as an attachment arrives (chat CDN URLs expire), with a byte limit they
enforce while downloading and, enforced here from the header before Pillow decodes anything, a format allow-list,
a pixel limit, a longest-side limit and an aspect-ratio limit. What is accepted is normalised to RGB (animated → first frame, CMYK, 16-bit, palette and alpha converted, EXIF rotation applied),
because a user cannot be expected to know which modes a model takes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.output import png_bytes
from storage.blobs import BlobStore

MAX_INPUT_BYTES = 20 * 2**20
MAX_INPUT_PIXELS = 4096 * 4096

MAX_INPUT_SIDE = 8192
"""The longest side of any input image. With `MAX_INPUT_ASPECT` it bounds every size the engine derives from an
input: an edit works at `engine.canvas.work_size` (within the preset's max_side/max_pixels) and is resized back
to the input's size; the safety checker's CLIP processor scales the shortest side to 224 px, so the longest
becomes at most 224 × 16 = 3584 px. A 16,000,000 × 1 PNG (15 KB) passed the pixel limit alone and made the
checker ask for 49 GB."""

MAX_INPUT_ASPECT = 16
"""The longest side may be at most this many times the shortest (1:16): a panorama or a phone screenshot fits,
a one-pixel line does not. Edits of a 1:16 input still work at no less than `engine.registry.MIN_SIDE` a side."""

INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""The only Pillow formats opened (`Image.open(formats=...)`): what phones, browsers and chat apps produce. The
rest (PCX, SGI, XBM, EPS, which would start Ghostscript, …) are old decoders nobody needs to expose."""
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"


class InputImageError(ValueError):
    """An upload that is not a usable image; the message says why in words the uploader can act on."""


@dataclass(frozen=True)
class InputImage:
    image: Image.Image
    blob_key: str


def read_image(
    data: bytes,
    *,
    name: str = "the file",
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> Image.Image:
    """Decode `data` as an RGB image, refusing non-images, formats outside `INPUT_FORMATS`, truncated files,
    decompression bombs and sizes outside `max_pixels`, `MAX_INPUT_SIDE` and `MAX_INPUT_ASPECT`."""
    if len(data) > max_bytes:
        raise InputImageError(
            f"{name} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
            check_size(opened.size, name=name, max_pixels=max_pixels)  # from the header, before any decoding
            opened.seek(0)  # the first frame of an animation
            opened.load()
    except InputImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb threshold (~89 megapixels) lies far above ours, so the image is over our limit too.
        raise InputImageError(
            f"{name} has far more pixels than the limit of {max_pixels / 1e6:.1f} megapixels"
        ) from None
    except UnidentifiedImageError:
        raise InputImageError(
            f"{name} is not an image Atelier can read: send a {FORMAT_NAMES} file"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"{name} could not be decoded: it looks truncated or damaged ({exc})") from None
    return _to_rgb(ImageOps.exif_transpose(opened) or opened)


def check_size(size: tuple[int, int], *, name: str = "the image", max_pixels: int = MAX_INPUT_PIXELS) -> None:
    """InputImageError, one line naming the limit, for a size outside the pixel, side or aspect-ratio limit."""
    width, height = size
    longest, shortest = max(width, height), min(width, height)
    if shortest < 1:
        raise InputImageError(f"{name} is {width}x{height}: it has no pixels")
    if longest > MAX_INPUT_SIDE:
        raise InputImageError(
            f"{name} is {width}x{height}: the longest side may be at most {MAX_INPUT_SIDE} pixels"
        )
    if longest > MAX_INPUT_ASPECT * shortest:
        raise InputImageError(
            f"{name} is {width}x{height}: its sides may differ by at most 1:{MAX_INPUT_ASPECT}"
        )
    if width * height > max_pixels:
        raise InputImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.1f} megapixels"
        )


async def store_input(blobs: BlobStore, image: Image.Image) -> str:
    """Store a normalised input image under a content-addressed key (the same image is stored once)."""
    data = png_bytes(image)
    key = f"inputs/{hashlib.sha256(data).hexdigest()}.png"
    if not await blobs.exists(key):
        await blobs.put(key, data, "image/png")
    return key


async def load_input(blobs: BlobStore, key: str) -> Image.Image:
    """An input image back from the blob store, for a worker."""
    return Image.open(io.BytesIO(await blobs.get(key))).convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit (and wider) greyscale: scale to 8 bits rather than clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        full = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / full * 255, 0, 255).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
