"""Upscaling with a spandrel model (Real-ESRGAN), in tiles so any image fits in memory, without seams.

The image is cut into a grid of core tiles. Each tile is run with `context` extra pixels of the real image
around it (the model sees what lies beyond its edge, as it would untiled), and neighbouring results overlap by
`blend` pixels across each core boundary, where they are mixed with a linear ramp whose two weights sum to
one. Cropping the context removes the padding artefacts at tile edges; the ramp hides what little difference
is left when the model's receptive field is wider than the context.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor

DEFAULT_TILE = 512
"""Core tile side in input pixels: a 512 px tile at x4 with 64 features fits a few GB of GPU memory."""

DEFAULT_CONTEXT = 32
"""Input pixels of surrounding image each tile sees beyond its blend region, then cropped away."""

DEFAULT_BLEND = 16
"""Width in input pixels of the linear ramp mixing two neighbouring tiles across their shared boundary."""

TileProgress = Callable[[int, int, Image.Image | None], None]


@dataclass(frozen=True)
class _Span:
    """One tile along one axis, in input pixels: its core, the part of its result kept, what it is run on."""

    core: tuple[int, int]
    kept: tuple[int, int]
    run: tuple[int, int]


def tile_count(width: int, height: int, *, tile: int = DEFAULT_TILE) -> int:
    """How many tiles `upscale` runs for an image of this size."""
    _check_tile(tile)
    return math.ceil(width / tile) * math.ceil(height / tile)


@torch.inference_mode()
def upscale(
    model: ImageModelDescriptor,
    image: Image.Image,
    *,
    tile: int = DEFAULT_TILE,
    context: int = DEFAULT_CONTEXT,
    blend: int = DEFAULT_BLEND,
    progress: TileProgress | None = None,
) -> Image.Image:
    """`image` (RGB) enlarged by the model's scale; `progress(tile, tiles, None)` after each tile."""
    _check_tile(tile)
    if context < 0 or blend < 0:
        raise ValueError(f"context and blend must be 0 or more (got {context} and {blend})")
    if image.mode != "RGB":
        raise ValueError(f"upscale takes an RGB image (got mode {image.mode}); convert it first")
    width, height = image.size
    scale = model.scale
    align = max(1, model.size_requirements.multiple_of)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).unsqueeze(0)
    pixels = pixels.to(device=model.device, dtype=model.dtype) / 255
    rows = _spans(height, tile, context, blend, align)
    columns = _spans(width, tile, context, blend, align)
    out = torch.zeros(3, height * scale, width * scale)
    coverage = torch.zeros(height * scale, width * scale)
    total, done = len(rows) * len(columns), 0
    for row in rows:
        row_weights = _ramp(row, height, scale)
        for column in columns:
            (y0, y1), (x0, x1) = row.run, column.run
            result = model(pixels[:, :, y0:y1, x0:x1])[0].float().cpu()
            (ky0, ky1), (kx0, kx1) = row.kept, column.kept
            kept = result[:, (ky0 - y0) * scale : (ky1 - y0) * scale, (kx0 - x0) * scale : (kx1 - x0) * scale]
            weights = row_weights[:, None] * _ramp(column, width, scale)[None, :]
            out[:, ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] += kept * weights
            coverage[ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] += weights
            done += 1
            if progress is not None:
                progress(done, total, None)
    out /= coverage  # 1 everywhere but where a last, short tile clipped a ramp
    array = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


def _check_tile(tile: int) -> None:
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels (got {tile})")


def _spans(length: int, tile: int, context: int, blend: int, align: int) -> list[_Span]:
    """Equal cores (a multiple of `align`, so pixel-unshuffling models see the same 2x2 cells as untiled)."""
    count = math.ceil(length / tile)
    core = math.ceil(math.ceil(length / count) / align) * align
    half = min(blend // 2, core // 2)
    spans = []
    for start in range(0, length, core):
        end = min(start + core, length)
        kept = (max(0, start - half), min(length, end + half))
        run_start = max(0, kept[0] - context) // align * align
        spans.append(_Span((start, end), kept, (run_start, min(length, kept[1] + context))))
    return spans


def _ramp(span: _Span, length: int, scale: int) -> torch.Tensor:
    """Weights of the kept output pixels along one axis: 1 inside, falling linearly to 0 across a boundary
    with a neighbour, so that the two weights of any overlapping pixel add up to exactly 1."""
    (start, end), (kept0, kept1) = span.core, span.kept
    x = (torch.arange(kept0 * scale, kept1 * scale, dtype=torch.float32) + 0.5) / scale
    weights = torch.ones_like(x)
    if start > 0 and start > kept0:
        half = start - kept0
        weights *= ((x - kept0) / (2 * half)).clamp(0, 1)
    if end < length and kept1 > end:
        half = kept1 - end
        weights *= ((kept1 - x) / (2 * half)).clamp(0, 1)
    return weights
