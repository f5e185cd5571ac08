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


OUTPAINT_ENLARGEMENT = 2
"""How far an outpaint's result may pass the preset's limits: up to this factor on a side (its square on the
area). Within the limits the model paints at the result's own size; past them it paints the whole canvas scaled
down into them, and the result is that painting enlarged with the source pasted back at full resolution (see
`outpaint_geometry`). 2 is Zoom Out 2× of the largest image the model makes."""


@dataclass(frozen=True)
class OutpaintGeometry:
    """Where an outpaint puts things: the result's size, the image's place in it, the size the model works at,
    and how the work canvas relates to the result: `scaled` False, the result padded right and bottom up to the
    preset's step and the minimum side (cropped off after); True, the result scaled down into the preset's
    limits (enlarged back after)."""

    size: tuple[int, int]
    offset: tuple[int, int]
    work: tuple[int, int]
    scaled: bool = False


def outpaint_geometry(preset: Preset, size: tuple[int, int], extend: Extend) -> OutpaintGeometry:
    """The canvas for extending an image of `size` by `extend`; the result grows by exactly the amounts asked.

    A canvas within the preset's limits is painted at its own size. A larger one, up to `OUTPAINT_ENLARGEMENT`
    times the limits, is painted at `work_size` (the most the model takes) and enlarged: the new border then has
    less detail than the source, whose own pixels are kept as they are (Zoom Out 2× of a 1024² image on a model
    of 1024×768 at most gives 2048², its centre the source). Raises ValueError when nothing is extended or the
    canvas passes even that."""
    if not extend.any:
        raise ValueError("outpaint needs at least one side to extend, e.g. --extend right=256")
    width, height = size[0] + extend.left + extend.right, size[1] + extend.top + extend.bottom
    step = preset.multiple_of
    padded = tuple(max(MIN_SIDE, math.ceil(side / step) * step) for side in (width, height))
    offset = (extend.left, extend.top)
    if max(padded) <= preset.max_side and padded[0] * padded[1] <= preset.max_pixels:
        return OutpaintGeometry(size=(width, height), offset=offset, work=padded)  # type: ignore[arg-type]
    asked = f"extending {size[0]}x{size[1]} to {width}x{height}"
    max_side, max_pixels = preset.max_side * OUTPAINT_ENLARGEMENT, preset.max_pixels * OUTPAINT_ENLARGEMENT**2
    if max(width, height) > max_side:
        raise ValueError(
            f"{asked} passes {preset.name}'s maximum of {max_side} px a side for an outpaint; extend less "
            "or downscale the image first"
        )
    if width * height > max_pixels:
        raise ValueError(
            f"{asked} is {width * height} pixels, past {preset.name}'s maximum of {max_pixels} for an "
            "outpaint; extend less or downscale the image first"
        )
    work = work_size(preset, (width, height))
    return OutpaintGeometry(size=(width, height), offset=offset, work=work, scaled=True)


def feather_width(size: tuple[int, int]) -> int:
    """Width in pixels of the band outside the mask where the result blends into the original."""
    return max(FEATHER_MIN_PX, round(max(size) / FEATHER_DIVISOR))
