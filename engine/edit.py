"""Editing images on the GPU: inpainting (insertion, removal, outpainting) and variations (image-to-image).

Both block; the worker calls them from its single GPU thread, like `Engine.txt2img`. Inpainting runs an
inpainting preset's pipeline at the work size of `engine.canvas`, then pastes the result into the original
with a feathered mask, so every pixel beyond the feathering band is the original's, byte for byte (an outpaint
keeps every pixel of the source: its band lies in the new border). Variations
reuse the resident text-to-image pipeline's components through `AutoPipelineForImage2Image.from_pipe`: no
second copy of the weights is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import diffusers
import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image
from PIL import Image

from engine.cache import PipelineCache
from engine.canvas import feather_width, outpaint_geometry, prepare_mask, work_size
from engine.edit_requests import (
    REMOVAL_NEGATIVE,
    REMOVAL_PROMPT,
    InpaintRequest,
    VariationRequest,
    check_inpaint,
    check_variation,
)
from engine.generate import ProgressFn
from engine.preview import first_preview
from engine.registry import Preset

FLUX_TXT2IMG_TOKENS = 256
"""T5 tokens of prompt a variation reads on Flux text-to-image models, as in txt2img: FLUX.1-schnell was trained
with at most 256. FLUX.1 Fill (from FLUX.1-dev) reads its pipeline's default of 512."""

TELEA_RADIUS = 5
"""Neighbourhood (px) OpenCV's Telea method looks at when filling a hole before removal."""


@torch.inference_mode()
def inpaint(
    cache: PipelineCache,
    preset: Preset,
    request: InpaintRequest,
    progress: ProgressFn | None = None,
    *,
    preview_every: int = 1,
) -> list[Image.Image]:
    """`request.count` edited images, each the size of the input (outpaint: of the extended canvas).

    Raises ValueError, before loading anything, for a request `preset` cannot run.
    """
    check_inpaint(preset, request)
    plan = _outpaint_plan(preset, request) if request.mode == "outpaint" else _inpaint_plan(preset, request)
    width, height = plan.work_image.size
    callback = _reporter(preset, width, height, progress, preview_every)
    pipeline = cache.get(preset)
    result = pipeline(
        prompt=_prompt(request),
        image=plan.work_image,
        mask_image=plan.work_mask,
        width=width,
        height=height,
        strength=request.strength,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        num_images_per_prompt=request.count,
        generator=_generators(request.seed, request.count),
        callback_on_step_end=callback,
        output_type="pil",
        **_negative_argument(preset, _negative(preset, request)),
    )
    return [plan.finish(image) for image in result.images]


@torch.inference_mode()
def vary(
    cache: PipelineCache,
    preset: Preset,
    request: VariationRequest,
    progress: ProgressFn | None = None,
    *,
    preview_every: int = 1,
) -> list[Image.Image]:
    """`request.count` variations of the input, each the input's size, from a text-to-image `preset`."""
    check_variation(preset, request)
    width, height = work_size(preset, request.image.size)
    callback = _reporter(preset, width, height, progress, preview_every)
    pipeline = AutoPipelineForImage2Image.from_pipe(cache.get(preset))
    pipeline.set_progress_bar_config(disable=True)
    # Flux's image-to-image pipeline takes the output size; the SD ones take the size of the input image.
    flux = {"width": width, "height": height, "max_sequence_length": FLUX_TXT2IMG_TOKENS}
    result = pipeline(
        prompt=request.prompt,
        image=_resized(request.image.convert("RGB"), (width, height)),
        strength=request.strength,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        num_images_per_prompt=request.count,
        generator=_generators(request.seed, request.count),
        callback_on_step_end=callback,
        output_type="pil",
        **(flux if preset.family == "flux" else {}),
        **_negative_argument(preset, request.negative),
    )
    return [_resized(image, request.image.size) for image in result.images]


def composite(
    original: Image.Image, generated: Image.Image, mask: Image.Image, feather: int, *, inward: bool = False
) -> Image.Image:
    """`generated` inside the white of `mask`, `original` outside it, a linear ramp `feather` px wide between.

    By default the ramp lies outside the mask: pixels at least `feather` px from it keep the original's exact
    values (inpainting: the edit blends into the untouched image). With `inward` it lies inside the mask, so
    every pixel outside it is the original's (outpainting: the source is kept whole and the new border starts
    from its stretched edge)."""
    inside = np.asarray(mask) >= 128
    if feather > 0 and inward:
        # Distance from every pixel inside the mask to the nearest one outside it (0 outside).
        distance = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        alpha = np.clip(distance / feather, 0.0, 1.0)
    elif feather > 0:
        # Distance from every pixel outside the mask to the nearest one inside (0 inside), exact Euclidean.
        distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        alpha = np.clip(1.0 - distance / feather, 0.0, 1.0)
    else:
        alpha = inside.astype(np.float32)
    before = np.asarray(original.convert("RGB"), dtype=np.float32)
    after = np.asarray(generated.convert("RGB"), dtype=np.float32)
    blended = np.rint(before + alpha[..., None] * (after - before)).clip(0, 255).astype(np.uint8)
    kept = (alpha == 0)[..., None]
    return Image.fromarray(np.where(kept, np.asarray(original.convert("RGB")), blended), "RGB")


def fill_from_surroundings(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the white of `mask` filled from the pixels around it (OpenCV's Telea method)."""
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    hole = (np.asarray(mask) >= 128).astype(np.uint8)
    return Image.fromarray(cv2.inpaint(pixels, hole, TELEA_RADIUS, cv2.INPAINT_TELEA), "RGB")


@dataclass(frozen=True)
class _Plan:
    """What the pipeline is given (at the work size) and what its output is pasted over (at the result's)."""

    base: Image.Image
    base_mask: Image.Image
    work_image: Image.Image
    work_mask: Image.Image
    padded: bool  # the work canvas is the result plus padding, cropped off; otherwise it is scaled
    keep_base: bool = False  # every pixel outside the mask stays the base's (outpaint: the source, whole)

    def finish(self, generated: Image.Image) -> Image.Image:
        if self.padded:
            generated = generated.crop((0, 0, *self.base.size))
        generated = _resized(generated, self.base.size)
        feather = feather_width(self.base.size)
        return composite(self.base, generated, self.base_mask, feather, inward=self.keep_base)


def _inpaint_plan(preset: Preset, request: InpaintRequest) -> _Plan:
    assert request.mask is not None  # check_inpaint refuses insertion and removal without one
    base = request.image.convert("RGB")
    base_mask = prepare_mask(request.mask, base.size)
    size = work_size(preset, base.size)
    work_image = _resized(base, size)
    work_mask = _work_mask(base_mask, size)
    if request.mode == "removal":
        work_image = fill_from_surroundings(work_image, work_mask)
    return _Plan(base, base_mask, work_image, work_mask, padded=False)


def _outpaint_plan(preset: Preset, request: InpaintRequest) -> _Plan:
    """The source on its grown canvas, the new area starting as the edge pixels stretched outwards (what a
    strength below 1 would start from). Painted at the result's size plus padding, or scaled down into the
    preset's limits (`outpaint_geometry`); either way the source's own pixels are pasted back unchanged."""
    geometry = outpaint_geometry(preset, request.image.size, request.extend)
    image = np.asarray(request.image.convert("RGB"))
    (left, top), (image_height, image_width) = geometry.offset, image.shape[:2]
    canvas = geometry.size if geometry.scaled else geometry.work
    right, bottom = canvas[0] - left - image_width, canvas[1] - top - image_height
    grown = Image.fromarray(cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE))
    mask = Image.new("L", canvas, 255)
    mask.paste(0, (left, top, left + image_width, top + image_height))
    if geometry.scaled:
        work_image, work_mask = _resized(grown, geometry.work), _work_mask(mask, geometry.work)
        return _Plan(grown, mask, work_image, work_mask, padded=False, keep_base=True)
    box = (0, 0, *geometry.size)
    return _Plan(grown.crop(box), mask.crop(box), grown, mask, padded=True, keep_base=True)


def _work_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`mask` at the work size: any pixel it touches at full size is repainted there too (no thin stroke, no
    sliver of new area is lost)."""
    if mask.size == size:
        return mask
    return mask.resize(size, Image.Resampling.BILINEAR).point(lambda value: 255 if value else 0)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _prompt(request: InpaintRequest) -> str:
    if request.mode == "removal":
        return request.prompt.strip() or REMOVAL_PROMPT
    return request.prompt


def _negative(preset: Preset, request: InpaintRequest) -> str:
    if request.mode != "removal" or not preset.supports_negative:
        return request.negative
    return ", ".join(part for part in (request.negative, REMOVAL_NEGATIVE) if part)


def _negative_argument(preset: Preset, negative: str) -> dict[str, Any]:
    return {"negative_prompt": negative or None} if preset.supports_negative else {}


def _generators(seed: int, count: int) -> list[torch.Generator]:
    """One CPU generator per image, seeded `seed + i`: the same seed gives the same image on any device."""
    return [torch.Generator("cpu").manual_seed(seed + index) for index in range(count)]


def _reporter(
    preset: Preset, width: int, height: int, progress: ProgressFn | None, preview_every: int
) -> _StepReporter | None:
    if preview_every < 0:
        raise ValueError(f"preview_every must be 0 (no previews) or more (got {preview_every})")
    return None if progress is None else _StepReporter(preset.family, width, height, progress, preview_every)


class _StepReporter:
    """The `callback_on_step_end` that reports (step, total, preview). The total is the number of steps the
    pipeline really runs, which strength below 1 makes fewer than asked."""

    def __init__(
        self, family: str, width: int, height: int, progress: ProgressFn, preview_every: int
    ) -> None:
        self.family, self.width, self.height = family, width, height
        self.progress, self.preview_every = progress, preview_every

    def __call__(
        self, pipeline: diffusers.DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        step, total = index + 1, pipeline.num_timesteps
        preview = None
        if self.preview_every and (step % self.preview_every == 0 or step == total):
            preview = first_preview(
                self.family,
                tensors["latents"],
                height=self.height,
                width=self.width,
                vae_scale_factor=pipeline.vae_scale_factor,
            )
        self.progress(step, total, preview)
        return {}
