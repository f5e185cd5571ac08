"""GPU configuration: attention on SDPA everywhere, generation under inference mode, the dtype per device;
on CUDA, channels-last and VAE slicing, and batches equal to lone images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.device import choose_dtype
from engine.engine import Engine, TextToImage
from engine.registry import Registry

SDPA_PROCESSORS = {"AttnProcessor2_0", "FluxAttnProcessor"}
"""diffusers' default processors, which call torch's scaled_dot_product_attention (flash / memory-efficient
kernels on CUDA); the classic `AttnProcessor` materialises the attention matrix and is slower."""


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_every_attention_runs_on_sdpa(engine: Engine, registry: Registry, name: str) -> None:
    pipeline = engine.cache.get(registry.get(name))
    for component in ("unet", "transformer", "vae"):
        model = getattr(pipeline, component, None)
        if model is not None:
            assert {type(p).__name__ for p in model.attn_processors.values()} <= SDPA_PROCESSORS, component
    encoders = [getattr(pipeline, name, None) for name in ("text_encoder", "text_encoder_2")]
    assert [e.config._attn_implementation for e in encoders if e is not None] in (["sdpa"], ["sdpa"] * 2)


def test_generation_runs_in_inference_mode_in_the_engine_dtype(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    modes: list[bool] = []
    engine.txt2img(
        preset,
        TextToImage.for_preset(preset, "a fox", steps=2),
        lambda step, total, preview: modes.append(torch.is_inference_mode_enabled()),
    )
    assert modes == [True, True] and not torch.is_inference_mode_enabled()
    assert engine.dtype == choose_dtype("cpu") == torch.float32
    assert {p.dtype for p in engine.cache.get(preset).unet.parameters()} == {torch.float32}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_on_cuda_batches_match_lone_images(registry: Registry, engine: Engine, name: str) -> None:
    gpu = Engine(registry, engine.cache.cache_dir, device="cuda")
    preset = registry.get(name)
    pipeline = gpu.cache.get(preset)
    assert pipeline.vae.use_slicing
    requests = [
        TextToImage.for_preset(preset, prompt, width=64, height=96, steps=3, seed=seed)
        for seed, prompt in enumerate(["a red fox", "a lighthouse", "a bowl of plums"])
    ]
    batched = gpu.txt2img_batch(preset, requests)
    for request, images in zip(requests, batched, strict=True):
        assert isinstance(images, list)
        [alone] = gpu.txt2img(preset, request)
        difference = np.abs(np.asarray(images[0], np.int16) - np.asarray(alone, np.int16))
        assert difference.max() <= 8  # half precision rounds batched products more coarsely than fp32
        assert isinstance(alone, Image.Image)
