"""The geometry of an edit: masks, the size a model works at, outpaint canvases, the feathering band.

Plain numpy and Pillow (no torch, no OpenCV), so a front-end validates a mask or an outpaint with exactly the
code the worker runs, while the user is still there to read the message. Conventions: a mask is white where the
image is repainted and black where it is kept; sizes are (width, height).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image

from engine.registry import MIN_SIDE, Preset

MASK_THRESHOLD = 128
"""Grey levels at or above it repaint, below it keep: anti-aliased or JPEG-compressed masks become binary."""

ASPECT_TOLERANCE = 0.02
"""Relative difference of aspect ratios still taken as the same shape (a mask saved one pixel off, say)."""

FEATHER_MIN_PX = 4
FEATHER_DIVISOR = 64
"""The feathering band is 1/64 of the result's longer side, at least 4 px: wide enough to hide the seam of an
upscaled generation, narrow enough that the rest of the image stays byte-for-byte the original."""


def prepare_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The mask as a binary 'L' image of `size` (255 repaint, 0 keep): resized to the image, thresholded.

    Raises ValueError for a mask of another shape than the image, an empty one (nothing to repaint) and an
    all-white one (nothing to keep).
    """
    width, height = size
    mask_width, mask_height = mask.size
    image_aspect, mask_aspect = width / height, mask_width / mask_height
    if abs(mask_aspect - image_aspect) > ASPECT_TOLERANCE * image_aspect:
        raise ValueError(
            f"the mask is {mask_width}x{mask_height} but the image is {width}x{height}: their aspect ratios "
            f"differ ({mask_aspect:.3f} vs {image_aspect:.3f}); draw the mask over the image itself"
        )
    grey = mask.convert("L")
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    repaint = np.asarray(grey) >= MASK_THRESHOLD
    if not repaint.any():
        raise ValueError("the mask is empty (all black): paint the area to change in white")
    if repaint.all():
        raise ValueError(
            "the mask is all white, so nothing of the image would be kept: paint only the area to change "
            "in white (to rework the whole image, use vary)"
        )
    return Image.fromarray(repaint.astype(np.uint8) * 255, "L")


def work_size(preset: Preset, size: tuple[int, int]) -> tuple[int, int]:
    """The size an edit of an image of `size` runs at: the image's own size, scaled up to the preset's default
    area when smaller (models draw poorly far below their training resolution) and down into its limits when
    larger, each side a multiple of the preset's step and at least the minimum side.

    The result is resized back to `size`, so the slight change of aspect ratio from rounding never shows.
    """
    width, height = size
    area = width * height
    scale = max(1.0, math.sqrt(preset.default_width * preset.default_height / area))
    scale = min(scale, preset.max_side / width, preset.max_side / height, math.sqrt(preset.max_pixels / area))
    step = preset.multiple_of
    return tuple(max(MIN_SIDE, math.floor(side * scale / step) * step) for side in (width, height))  # type: ignore[return-value]


@dataclass(frozen=True)
class Extend:
    """Pixels added to each side of an image by an outpaint."""

    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"extend {field.name} must be a whole number of pixels, 0 or more (got {value!r})"
                )

    @property
    def any(self) -> bool:
        return any((self.left, self.right, self.top, self.bottom))


@dataclass(frozen=True)
class OutpaintGeometry:
    """Where an outpaint puts things: the result's size, the image's place in it, and the size the model works
    at (the result padded right and bottom up to the preset's step and the minimum side, cropped off after)."""

    size: tuple[int, int]
    offset: tuple[int, int]
    work: tuple[int, int]


def outpaint_geometry(preset: Preset, size: tuple[int, int], extend: Extend) -> OutpaintGeometry:
    """The canvas for extending an image of `size` by `extend`, at native resolution so that the result grows
    by exactly the amounts asked. Raises ValueError when nothing is extended or the canvas passes the preset's
    limits."""
    if not extend.any:
        raise ValueError("outpaint needs at least one side to extend, e.g. --extend right=256")
    width, height = size[0] + extend.left + extend.right, size[1] + extend.top + extend.bottom
    step = preset.multiple_of
    work = tuple(max(MIN_SIDE, math.ceil(side / step) * step) for side in (width, height))
    asked = f"extending {size[0]}x{size[1]} to {width}x{height}"
    if max(work) > preset.max_side:
        raise ValueError(
            f"{asked} passes {preset.name}'s maximum of {preset.max_side} px a side; extend less or "
            "downscale the image first"
        )
    if work[0] * work[1] > preset.max_pixels:
        raise ValueError(
            f"{asked} is {work[0] * work[1]} pixels, past {preset.name}'s maximum of {preset.max_pixels}; "
            "extend less or downscale the image first"
        )
    return OutpaintGeometry(size=(width, height), offset=(extend.left, extend.top), work=work)  # type: ignore[arg-type]


def feather_width(size: tuple[int, int]) -> int:
    """Width in pixels of the band outside the mask where the result blends into the original."""
    return max(FEATHER_MIN_PX, round(max(size) / FEATHER_DIVISOR))
