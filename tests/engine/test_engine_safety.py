"""The safety checker beside the pipeline: it flags, it does not change images, and its arithmetic is
diffusers' own (checked against `StableDiffusionSafetyChecker.forward` on thresholds that split a batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.engine import Engine
from engine.generate import TextToImage
from engine.loading import weights_source
from engine.registry import Registry
from engine.safety import SafetyChecker

REQUEST = TextToImage(
    prompt="a fox", negative="", width=64, height=64, steps=2, guidance=7.5, seed=3, count=2
)


def _noise(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(count)]


def test_presets_flag_by_their_checker_and_images_stay_as_generated(
    engine: Engine, registry: Registry
) -> None:
    tiny, strict, sdxl = (registry.get(n) for n in ("tiny", "tiny-strict", "tiny-sdxl"))
    plain = engine.txt2img(tiny, REQUEST)
    flagged = engine.txt2img(strict, REQUEST)

    assert engine.safety_flags(tiny, plain) == [False, False]
    assert engine.safety_flags(strict, flagged) == [True, True]
    assert engine.safety_flags(sdxl, plain) == [False, False]  # SDXL has no checker: nothing to flag by
    assert [np.asarray(i).tobytes() for i in flagged] == [np.asarray(i).tobytes() for i in plain]
    assert all(np.asarray(i).max() > 0 for i in flagged)  # not the black squares the pipeline's checker makes
    assert engine.cache.get(tiny).safety_checker is None  # the pipeline never runs it itself


def test_the_flags_are_what_diffusers_checker_decides(registry: Registry, tiny_cache: Path) -> None:
    preset = registry.get("tiny")
    checker = SafetyChecker.load(
        preset, weights_source(preset, tiny_cache), device=torch.device("cpu"), dtype=torch.float32
    )
    images = _noise(8)
    pixels = checker.processor(images, return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = checker.model.visual_projection(checker.model.vision_model(pixels)[1])
        first = (
            torch.nn.functional.normalize(embeds)
            @ torch.nn.functional.normalize(checker.model.concept_embeds[:1]).t()
        )
        # One concept's threshold at its median over the batch (half the images above it), the others out of
        # reach: the decision then differs between images.
        weights = torch.full_like(checker.model.concept_embeds_weights, 2.0)
        weights[0] = first.median()
        checker.model.concept_embeds_weights.copy_(weights)
    ours = checker.flags(images)
    _, theirs = checker.model(clip_input=pixels, images=np.zeros((8, 4, 4, 3)))
    assert ours == [bool(v) for v in theirs]
    assert 0 < sum(ours) < len(ours)
    assert checker.flags([]) == []
