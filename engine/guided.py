"""Guided generation on the GPU: ControlNet conditions, IP-Adapter references and the hires fix.

One entry point, `guided`, blocks like `Engine.txt2img`; the worker calls it on its single GPU thread. The
ControlNet pipelines are made with `from_pipe` around the resident text-to-image pipeline, so its weights are
shared, never loaded twice; ControlNets, the depth annotator and IP-Adapters are resident in the same cache
and memory budget as the pipelines (`PipelineCache.get_model`). IP-Adapter weights are put into the shared UNet
for one call and taken out again, so the plain pipeline is unchanged afterwards. See `engine.guided_requests`
for what each option means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import diffusers
import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image
from safetensors import safe_open

from engine.cache import PipelineCache
from engine.generate import ProgressFn
from engine.guided_requests import CANNY_THRESHOLDS, GuidedRequest, Reference, check_guided
from engine.hires import refine
from engine.preview import first_preview
from engine.registry import Preset
from engine.tiny_guided import ensure_built

PIPELINES = {"sd15": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
CONTROLNET_PIPELINES = {
    "sd15": StableDiffusionControlNetPipeline,
    "sdxl": StableDiffusionXLControlNetPipeline,
}


@dataclass
class GuidedResult:
    """The images, and what the pipelines were really given: the first pass's pipeline class and the condition
    image as that pipeline held it (read back from its tensors in the step callback), and each pass's
    (width, height, steps run)."""

    images: list[Image.Image]
    pipeline: str
    condition: Image.Image | None = None
    passes: list[tuple[int, int, int]] = field(default_factory=list)


def canny(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Canny edges of `image` resized to `size`, white on black in three channels, as the canny ControlNets read."""
    grey = np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS))
    edges = cv2.Canny(grey, *CANNY_THRESHOLDS)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


@torch.inference_mode()
def guided(
    cache: PipelineCache,
    preset: Preset,
    request: GuidedRequest,
    progress: ProgressFn | None = None,
    *,
    preview_every: int = 1,
) -> GuidedResult:
    """`request.base.count` images at the request's size. `progress` gets each pass's steps in turn: (step,
    total) of the first pass, then of the second with hires fix. Raises ValueError, before loading anything,
    for a request `preset` cannot run."""
    check_guided(preset, request)
    base = request.base
    first = (request.hires.width, request.hires.height) if request.hires else (base.width, base.height)
    # Guidance models first, the pipeline last: it is then the most recently used, and loading one of its
    # guidance models never evicts it.
    controlnet = adapter = None
    if request.controlnet is not None:
        controlnet = cache.get_model(request.controlnet, lambda: _load_controlnet(request.controlnet, cache))
    if request.references:
        assert request.adapter is not None  # check_guided
        adapter = cache.get_model(request.adapter, lambda: _load_adapter(request.adapter, cache))
    condition = None if request.control is None else _condition(cache, request, first)
    plain = cache.get(preset)
    arguments: dict[str, Any] = {}
    if controlnet is not None:
        assert request.control is not None
        pipeline = CONTROLNET_PIPELINES[preset.family].from_pipe(plain, controlnet=controlnet)
        arguments = {"image": condition, "controlnet_conditioning_scale": request.control.weight}
    else:
        pipeline = PIPELINES[preset.family].from_pipe(plain)
    pipeline.set_progress_bar_config(disable=True)
    observer = _Observer(preset.family, first, progress, preview_every, watch_image=condition is not None)
    with _references(pipeline, request, adapter) as images:
        if images:
            arguments["ip_adapter_image"] = images
        result = pipeline(
            prompt=base.prompt,
            negative_prompt=base.negative or None,
            width=first[0],
            height=first[1],
            num_inference_steps=base.steps,
            guidance_scale=base.guidance,
            num_images_per_prompt=base.count,
            generator=_generators(base.seed, base.count),
            callback_on_step_end=observer,
            callback_on_step_end_tensor_inputs=["latents", "image"] if condition is not None else ["latents"],
            output_type="pil",
            **arguments,
        )
    made = GuidedResult(
        images=list(result.images),
        pipeline=type(pipeline).__name__,
        condition=observer.condition,
        passes=[(*first, observer.steps)],
    )
    if request.hires is not None:
        _hires_pass(plain, preset, request, made, progress, preview_every)
    return made


def _hires_pass(
    plain: diffusers.DiffusionPipeline,
    preset: Preset,
    request: GuidedRequest,
    made: GuidedResult,
    progress: ProgressFn | None,
    preview_every: int,
) -> None:
    """Upscale the first pass's pixels to the final size and denoise them again (`engine.hires`), each image
    with its own seed."""
    assert request.hires is not None
    base = request.base
    size = (base.width, base.height)
    observer = _Observer(preset.family, size, progress, preview_every, watch_image=False)
    made.images = refine(
        plain,
        preset,
        made.images,
        size=size,
        strength=request.hires.strength,
        prompts=[base.prompt] * len(made.images),
        negatives=[base.negative] * len(made.images) if base.negative else None,
        seeds=[base.seed + index for index in range(base.count)],
        steps=base.steps,
        guidance=base.guidance,
        callback=observer,
    )
    made.passes.append((*size, observer.steps))


def _condition(cache: PipelineCache, request: GuidedRequest, size: tuple[int, int]) -> Image.Image:
    control = request.control
    assert control is not None
    if control.given:
        return control.image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if control.kind == "canny":
        return canny(control.image, size)
    assert request.annotator is not None  # check_guided: depth has one
    model, processor = cache.get_model(request.annotator, lambda: _load_annotator(request.annotator, cache))
    return _depth(model, processor, control.image, size)


def _depth(model: Any, processor: Any, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A depth map of `image` at `size`, near white and far black, normalised to the full grey range."""
    device = next(model.parameters()).device
    inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(device)
    depth = model(pixel_values=inputs["pixel_values"].to(model.dtype)).predicted_depth
    depth = torch.nn.functional.interpolate(
        depth[:, None].float(), size=(size[1], size[0]), mode="bicubic", align_corners=False
    )[0, 0]
    low, high = depth.min(), depth.max()
    span = high - low if high > low else torch.ones_like(high)  # a flat map stays black
    grey = ((depth - low) / span * 255).round().byte().cpu().numpy()
    return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")


class _references:
    """The request's reference images loaded into the pipeline as IP-Adapter image prompts for one call: one
    adapter copy per image, so each has its own weight; a style reference acts on the UNet's up blocks only and
    a content reference on its down and middle blocks (as InstantStyle splits them). Unloaded on exit."""

    def __init__(self, pipeline: diffusers.DiffusionPipeline, request: GuidedRequest, adapter: Any) -> None:
        self.pipeline, self.request, self.adapter = pipeline, request, adapter

    def __enter__(self) -> list[Image.Image]:
        references = self.request.references
        if not references:
            return []
        weights, encoder = self.adapter
        self.pipeline.register_modules(image_encoder=encoder, feature_extractor=None)
        count = len(references)
        self.pipeline.load_ip_adapter([weights] * count, subfolder=[""] * count, weight_name=[""] * count)
        self.pipeline.set_ip_adapter_scale([_scale(reference) for reference in references])
        return [reference.image.convert("RGB") for reference in references]

    def __exit__(self, *exc: object) -> None:
        if self.request.references:
            self.pipeline.unload_ip_adapter()


def _scale(reference: Reference) -> float | dict[str, float]:
    if reference.role == "style":
        return {"up": reference.weight, "down": 0.0, "mid": 0.0}
    if reference.role == "content":
        return {"up": 0.0, "down": reference.weight, "mid": reference.weight}
    return reference.weight


def _source(preset: Preset, cache: PipelineCache) -> str | Path:
    return ensure_built(preset, cache.cache_dir) if preset.is_tiny else preset.source


def _module_bytes(*modules: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def _load_controlnet(preset: Preset, cache: PipelineCache) -> tuple[ControlNetModel, int]:
    options = {"variant": preset.variant} if preset.variant else {}
    model = ControlNetModel.from_pretrained(_source(preset, cache), dtype=cache.dtype, **options)
    return model, _module_bytes(model)


def _load_annotator(preset: Preset, cache: PipelineCache) -> tuple[tuple[Any, Any], int]:
    import transformers

    model_class = getattr(transformers, preset.pipeline)
    source = _source(preset, cache)
    model = model_class.from_pretrained(source, dtype=torch.float32).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(source)
    return _Resident(model, processor), _module_bytes(model)


def _load_adapter(preset: Preset, cache: PipelineCache) -> tuple[Any, int]:
    """The adapter's weights as diffusers' state-dict layout ({"image_proj": …, "ip_adapter": …}) and its CLIP
    vision encoder (in the `image_encoder` folder beside the weight file)."""
    from huggingface_hub import hf_hub_download
    from transformers import CLIPVisionModelWithProjection

    folder, _, name = (preset.weight_name or "").rpartition("/")
    source = _source(preset, cache)
    if Path(source).is_dir():
        path = Path(source) / folder / name
        encoder_source: str | Path = Path(source) / folder / "image_encoder"
        encoder_options: dict[str, Any] = {}
    else:
        path = Path(hf_hub_download(str(source), name, subfolder=folder or None))
        encoder_source, encoder_options = str(source), {"subfolder": f"{folder}/image_encoder".strip("/")}
    weights: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(path), framework="pt", device="cpu") as file:
        for key in file.keys():  # safe_open is not a mapping
            group, _, rest = key.partition(".")
            if group in weights:
                weights[group][rest] = file.get_tensor(key).to(cache.dtype)
    encoder = CLIPVisionModelWithProjection.from_pretrained(
        encoder_source, dtype=cache.dtype, **encoder_options
    )
    size = _module_bytes(encoder) + sum(
        t.numel() * t.element_size() for g in weights.values() for t in g.values()
    )
    return _Resident(weights, encoder), size


class _Resident(tuple):
    """A pair kept in the cache whose `to(device)` moves the torch modules in it."""

    def __new__(cls, first: Any, second: Any):
        return super().__new__(cls, (first, second))

    def to(self, device: torch.device) -> _Resident:
        for part in self:
            if isinstance(part, torch.nn.Module):
                part.to(device)
            elif isinstance(part, dict):
                for group in part.values():
                    for key, tensor in group.items():
                        group[key] = tensor.to(device)
        return self


def _generators(seed: int, count: int) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed + index) for index in range(count)]


class _Observer:
    """The step callback: reports (step, total, preview) of the pass, counts the steps run, and on the first
    step reads back the condition image the pipeline holds (the last of its batch: the conditional half)."""

    def __init__(
        self,
        family: str,
        size: tuple[int, int],
        progress: ProgressFn | None,
        preview_every: int,
        *,
        watch_image: bool,
    ) -> None:
        if preview_every < 0:
            raise ValueError(f"preview_every must be 0 (no previews) or more (got {preview_every})")
        self.family, self.size, self.progress, self.preview_every = family, size, progress, preview_every
        self.watch_image = watch_image
        self.steps = 0
        self.condition: Image.Image | None = None

    def __call__(
        self, pipeline: diffusers.DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        self.steps = index + 1
        if self.watch_image and self.condition is None:
            held = tensors["image"][-1].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            self.condition = Image.fromarray((held * 255).round().astype(np.uint8), "RGB")
        if self.progress is not None:
            step, total = index + 1, pipeline.num_timesteps
            preview = None
            if self.preview_every and (step % self.preview_every == 0 or step == total):
                preview = first_preview(
                    self.family,
                    tensors["latents"][:1],
                    height=self.size[1],
                    width=self.size[0],
                    vae_scale_factor=pipeline.vae_scale_factor,
                )
            self.progress(step, total, preview)
        return {}
