"""Seamless tiling (`--tile`): every 2-D convolution of the denoiser and the VAE pads circularly instead of with
zeros, so the image's left edge continues its right edge and its top its bottom, and copies of it tile without a
seam. Set for one generation and restored after, since the pipeline's modules are shared with other jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import diffusers
import torch


@contextmanager
def seamless(pipeline: diffusers.DiffusionPipeline, enabled: bool = True) -> Iterator[None]:
    """Within the block, the pipeline's UNet (or transformer) and VAE convolutions pad circularly."""
    if not enabled:
        yield
        return
    changed: list[tuple[torch.nn.Conv2d, str]] = []
    for name in ("unet", "transformer", "vae"):
        module = getattr(pipeline, name, None)
        if module is None:
            continue
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d) and layer.padding_mode != "circular":
                changed.append((layer, layer.padding_mode))
                layer.padding_mode = "circular"
    try:
        yield
    finally:
        for layer, mode in changed:
            layer.padding_mode = mode
