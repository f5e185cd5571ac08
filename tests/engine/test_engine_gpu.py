"""On a CUDA machine: the tiny presets run on the GPU in its half dtype, with channels-last convolutions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.device import choose_dtype
from engine.engine import Engine, TextToImage
from engine.registry import Registry

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_tiny_presets_run_on_the_gpu(registry: Registry, tiny_cache: Path, name: str) -> None:
    engine = Engine(registry, tiny_cache, device="cuda")
    assert engine.dtype == choose_dtype("cuda")
    preset = registry.get(name)
    previews = []
    request = TextToImage.for_preset(preset, "a red fox", width=64, height=96, count=2, seed=3)
    images = engine.txt2img(preset, request, lambda step, total, preview: previews.append(preview.size))
    assert [image.size for image in images] == [(64, 96)] * 2
    assert previews == [(8, 12)] * preset.default_steps
    assert np.asarray(images[0]).std() > 0
    pipeline = engine.cache.get(preset)
    assert pipeline.device.type == "cuda"
    if hasattr(pipeline, "unet"):
        weight = next(p for p in pipeline.unet.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last)
    again = engine.txt2img(preset, request)
    assert np.array_equal(np.asarray(again[0]), np.asarray(images[0]))
