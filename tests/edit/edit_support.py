"""Helpers for the edit tests: input images, masks and the feathering band."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: any pixel a step changes by mistake shows."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def beyond_band(mask: Image.Image, feather: int) -> np.ndarray:
    """True where a pixel is more than `feather` px from the mask in every direction (a square dilation), so
    the editor must have kept it exactly."""
    return np.asarray(mask.filter(ImageFilter.MaxFilter(2 * feather + 1))) == 0
