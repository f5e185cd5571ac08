"""Input images: read what people upload safely, and store it so a job carries a blob key, never bytes.

Front-ends call `read_image` as soon as an attachment arrives (chat CDN URLs expire), with a byte limit they
enforce while downloading and a pixel limit enforced here before Pillow decodes anything. What is accepted is
normalised to RGB (animated → first frame, CMYK, 16-bit, palette and alpha converted, EXIF rotation applied),
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
    """Decode `data` as an RGB image, refusing non-images, truncated files and decompression bombs."""
    if len(data) > max_bytes:
        raise InputImageError(
            f"{name} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size  # read from the header, before any pixel is decoded
            if width * height > max_pixels:
                raise InputImageError(
                    f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                    f"the limit is {max_pixels / 1e6:.1f} megapixels"
                )
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
        raise InputImageError(f"{name} is not an image Atelier can read (PNG, JPEG, WebP, GIF, …)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"{name} could not be decoded: it looks truncated or damaged ({exc})") from None
    return _to_rgb(ImageOps.exif_transpose(opened) or opened)


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
