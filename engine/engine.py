"""The engine: runs text-to-image requests on resident pipelines, reporting progress after every step.

`Engine.txt2img` blocks; the worker calls it from one dedicated GPU thread. The engine holds no global state:
everything it needs (device, dtype, cache) lives on the instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from PIL import Image

from engine.cache import PipelineCache
from engine.device import choose_device, choose_dtype
from engine.generate import ProgressFn, TextToImage, check_request
from engine.preview import first_preview
from engine.registry import Preset, Registry

__all__ = ["Engine", "ProgressFn", "TextToImage"]

FLUX_MAX_SEQUENCE_LENGTH = 256
"""T5 tokens of prompt Flux reads; FLUX.1-schnell was trained with at most 256."""


class Engine:
    """Text-to-image on one device, with a residency cache of pipelines."""

    def __init__(
        self,
        registry: Registry,
        cache_dir: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        memory_budget_bytes: int | None = None,
    ) -> None:
        self.registry = registry
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self._cache = PipelineCache(
            cache_dir=Path(cache_dir),
            device=self.device,
            dtype=self.dtype,
            memory_budget_bytes=memory_budget_bytes,
        )

    @property
    def cache(self) -> PipelineCache:
        """The residency cache, for its statistics (hits, misses, load seconds, evictions)."""
        return self._cache

    @torch.inference_mode()
    def txt2img(
        self,
        preset: Preset,
        request: TextToImage,
        progress: ProgressFn | None = None,
        *,
        preview_every: int = 1,
    ) -> list[Image.Image]:
        """Generate `request.count` images; raises ValueError, before loading anything, for a request the
        preset's limits reject. `progress` gets a preview every `preview_every` steps (0: never)."""
        check_request(preset, request)
        if preview_every < 0:
            raise ValueError(f"preview_every must be 0 (no previews) or more (got {preview_every})")
        pipeline = self._cache.get(preset)
        generators = [
            torch.Generator("cpu").manual_seed(request.seed + index) for index in range(request.count)
        ]
        callback = None
        if progress is not None:
            callback = _StepReporter(preset, request, progress, preview_every)
        result = pipeline(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            num_images_per_prompt=request.count,
            generator=generators,
            callback_on_step_end=callback,
            output_type="pil",
            **_family_arguments(preset, request),
        )
        return list(result.images)


def _family_arguments(preset: Preset, request: TextToImage) -> dict[str, Any]:
    if preset.family == "flux":
        return {"max_sequence_length": FLUX_MAX_SEQUENCE_LENGTH}
    return {"negative_prompt": request.negative or None}


class _StepReporter:
    """The `callback_on_step_end` that turns a pipeline step into a `progress(step, total, preview)` call."""

    def __init__(
        self, preset: Preset, request: TextToImage, progress: ProgressFn, preview_every: int
    ) -> None:
        self.preset = preset
        self.request = request
        self.progress = progress
        self.preview_every = preview_every

    def __call__(
        self, pipeline: diffusers.DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        step, total = index + 1, self.request.steps
        preview = None
        if self.preview_every and (step % self.preview_every == 0 or step == total):
            preview = first_preview(
                self.preset.family,
                tensors["latents"],
                height=self.request.height,
                width=self.request.width,
                vae_scale_factor=pipeline.vae_scale_factor,
            )
        self.progress(step, total, preview)
        return {}
