"""The hires fix's second pass: first-pass images upscaled to the final size and denoised again, image to image.

Shared by plain text-to-image (`engine.batching`, where a request's `hires` is set) and guided generation
(`engine.guided`). The image-to-image pipeline is made with `from_pipe` around the resident text-to-image
pipeline, so it shares its weights (and any LoRA or seamless padding applied to them) and loads nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image
from PIL import Image

from engine.registry import Preset

FLUX_MAX_SEQUENCE_LENGTH = 256
"""T5 tokens of prompt Flux reads; FLUX.1-schnell was trained with at most 256."""

StepCallback = Callable[[diffusers.DiffusionPipeline, int, Any, dict[str, Any]], dict[str, Any]]


def refine(
    plain: diffusers.DiffusionPipeline,
    preset: Preset,
    images: Sequence[Image.Image],
    *,
    size: tuple[int, int],
    strength: float,
    prompts: Sequence[str],
    negatives: Sequence[str] | None,
    seeds: Sequence[int],
    steps: int,
    guidance: float,
    callback: StepCallback | None,
) -> list[Image.Image]:
    """`images` resized to `size` with Lanczos and re-denoised from `strength` (so `steps * strength` steps
    run, at least one), image i with prompt i and its own generator seeded `seeds[i]`; `callback` is the step
    callback."""
    pipeline = AutoPipelineForImage2Image.from_pipe(plain)
    pipeline.set_progress_bar_config(disable=True)
    upscaled = [image.resize(size, Image.Resampling.LANCZOS) for image in images]
    if preset.family == "flux":  # its image-to-image pipeline takes the size (default: 1024²) and no negative
        arguments: dict[str, Any] = {
            "width": size[0],
            "height": size[1],
            "max_sequence_length": FLUX_MAX_SEQUENCE_LENGTH,
        }
    else:
        arguments = {"negative_prompt": list(negatives) if negatives else None}
    result = pipeline(
        prompt=list(prompts),
        image=upscaled,
        strength=strength,
        num_inference_steps=max(steps, math.ceil(1 / strength)),  # diffusers refuses a pass of 0 steps
        guidance_scale=guidance,
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        callback_on_step_end=callback,
        output_type="pil",
        **arguments,
    )
    return list(result.images)
