"""Upscale (Creative)'s second half: an upscaled image reworked by a text-to-image model at low strength, tile by
tile, so the model draws detail at the larger size instead of the upscaler only interpolating it.

Tiles are the model's default size (what it draws best at), overlapping by a quarter of a tile; overlaps are
mixed with weights that ramp linearly to the tile's edge, so no seam shows. Every tile is drawn from the same
seed. Blocks; the worker calls it from its GPU thread. Components are shared with the resident text-to-image
pipeline (`from_pipe`), as for variations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image
from PIL import Image

from engine.cache import PipelineCache
from engine.registry import Preset

OVERLAP_DIVISOR = 4  # tiles overlap by a quarter of their side

TileProgress = Callable[[int, int, Image.Image | None], None]


@dataclass(frozen=True)
class Refinement:
    """What the model is asked to do to every tile."""

    prompt: str
    negative: str
    strength: float
    steps: int
    guidance: float
    seed: int


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of `tile` px covering `length` px, overlapping by at least a quarter tile."""
    if length <= tile:
        return [0]
    stride = tile - tile // OVERLAP_DIVISOR
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


@torch.inference_mode()
def refine(
    cache: PipelineCache,
    preset: Preset,
    image: Image.Image,
    refinement: Refinement,
    progress: TileProgress | None = None,
) -> Image.Image:
    """`image` reworked tile by tile by `preset` (a text-to-image preset); the same size as `image`."""
    if preset.role != "txt2img":
        raise ValueError(f"model {preset.name!r} is a {preset.role} model, not a txt2img one")
    image = image.convert("RGB")
    width, height = image.size
    step = preset.multiple_of
    tile_w = max(step, min(preset.default_width, width) // step * step)
    tile_h = max(step, min(preset.default_height, height) // step * step)
    pipeline = AutoPipelineForImage2Image.from_pipe(cache.get(preset))
    pipeline.set_progress_bar_config(disable=True)
    source = np.asarray(image, dtype=np.float32)
    total = np.zeros_like(source)
    weights = np.zeros(source.shape[:2], dtype=np.float32)
    ramp = _weights(tile_w, tile_h)
    boxes = [(x, y) for y in tile_starts(height, tile_h) for x in tile_starts(width, tile_w)]
    extra: dict = {"width": tile_w, "height": tile_h} if preset.family == "flux" else {}
    if preset.supports_negative:
        extra["negative_prompt"] = refinement.negative or None
    for number, (x, y) in enumerate(boxes, start=1):
        crop = image.crop((x, y, x + tile_w, y + tile_h))
        result = pipeline(
            prompt=refinement.prompt,
            image=crop,
            strength=refinement.strength,
            num_inference_steps=refinement.steps,
            guidance_scale=refinement.guidance,
            generator=torch.Generator("cpu").manual_seed(refinement.seed),
            output_type="pil",
            **extra,
        ).images[0]
        if result.size != crop.size:
            result = result.resize(crop.size, Image.Resampling.LANCZOS)
        total[y : y + tile_h, x : x + tile_w] += np.asarray(result, dtype=np.float32) * ramp[..., None]
        weights[y : y + tile_h, x : x + tile_w] += ramp
        if progress is not None:
            progress(number, len(boxes), None)
    # Pixels no tile covered (an image side not a multiple of the model's step) keep the upscaler's values.
    covered = weights > 0
    out = source.copy()
    out[covered] = total[covered] / weights[covered][:, None]
    return Image.fromarray(np.rint(out).clip(0, 255).astype(np.uint8), "RGB")


def _weights(width: int, height: int) -> np.ndarray:
    """A tile's blending weights: 1 in the middle, ramping down linearly over a quarter tile to each edge (never
    to 0, so an image corner covered by one tile only still counts)."""

    def axis(length: int) -> np.ndarray:
        band = max(1, length // OVERLAP_DIVISOR)
        position = np.arange(length, dtype=np.float32)
        distance = np.minimum(position + 1, length - position)
        return np.clip(distance / band, 1e-3, 1.0)

    return np.outer(axis(height), axis(width)).astype(np.float32)
