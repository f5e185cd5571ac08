"""Loading a preset's pipeline: real weights from the Hugging Face hub or a local directory, tiny ones from
their built directory, always through the pipeline class's `from_pretrained`."""

from __future__ import annotations

import inspect
from pathlib import Path

import diffusers
import torch

from engine.building import exclusive
from engine.registry import Preset
from engine.tiny import ensure_built


def load_pipeline(preset: Preset, *, cache_dir: Path, dtype: torch.dtype) -> diffusers.DiffusionPipeline:
    """The preset's pipeline in `dtype`, still on the CPU so its size can be weighed before it moves.

    Real weights download into the standard Hugging Face cache (HF_HOME) when not there yet.
    """
    pipeline_class = getattr(diffusers, preset.pipeline, None)
    if not (isinstance(pipeline_class, type) and issubclass(pipeline_class, diffusers.DiffusionPipeline)):
        raise ValueError(f"preset {preset.name!r}: {preset.pipeline!r} is not a diffusers pipeline class")
    # The safety checker is not part of the pipeline here: inside it, it blackens flagged images; the engine
    # runs it beside the pipeline instead, to flag them (engine.safety).
    options: dict = {"variant": preset.variant} if preset.variant else {}
    if "safety_checker" in inspect.signature(pipeline_class.__init__).parameters:
        options |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    with exclusive():  # transformers' loading is not thread-safe (engine.building)
        pipeline = pipeline_class.from_pretrained(weights_source(preset, cache_dir), dtype=dtype, **options)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def weights_source(preset: Preset, cache_dir: Path) -> str | Path:
    """Where the preset's weights load from: its tiny build's directory, or its Hugging Face repo id (or
    local directory) as the registry gives it."""
    return ensure_built(preset, cache_dir) if preset.is_tiny else preset.source


def place(pipeline: diffusers.DiffusionPipeline, device: torch.device) -> None:
    """Move a loaded pipeline to `device`; on CUDA, convolution-heavy modules go channels-last, which is
    faster on tensor cores, and a batch is decoded one image at a time (VAE slicing: the same speed, a fraction
    of the peak memory). Attention keeps diffusers' default processors, which call PyTorch's SDPA kernels;
    nothing here forces a slower one."""
    pipeline.to(device)
    if device.type == "cuda":
        for name in ("unet", "vae"):
            module = getattr(pipeline, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)
        vae = getattr(pipeline, "vae", None)
        if vae is not None and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()


def pipeline_bytes(pipeline: diffusers.DiffusionPipeline) -> int:
    """Memory held by a pipeline's weights: every parameter and buffer of its torch modules."""
    total = 0
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            total += sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    return total
