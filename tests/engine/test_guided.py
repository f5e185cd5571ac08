"""Guided generation on the tiny presets: ControlNet (computed canny and depth, a given condition), hires fix
in two passes, IP-Adapter references, and residency of the guidance models in the pipeline cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cache import PipelineCache
from engine.generate import Hires, TextToImage
from engine.guided import guided
from engine.guided_requests import (
    Control,
    GuidedRequest,
    Reference,
    adapter_for,
    annotator_for,
    controlnet_for,
    hires_plan,
    pixel_sha256,
)
from engine.registry import Registry


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> PipelineCache:
    return PipelineCache(cache_dir=tiny_cache, device=torch.device("cpu"), dtype=torch.float32)


def source_image() -> Image.Image:
    """Blocks of flat colour: strong, known edges."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[16:48, 8:40] = (230, 200, 40)
    pixels[24:56, 30:60] = (20, 80, 200)
    return Image.fromarray(pixels)


def expected_canny(image: Image.Image) -> Image.Image:
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("L")), 100, 200)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


@pytest.mark.parametrize(
    ("model", "pipeline"),
    [("tiny", "StableDiffusionControlNetPipeline"), ("tiny-sdxl", "StableDiffusionXLControlNetPipeline")],
)
def test_canny_condition_reaches_the_controlnet_pipeline(
    registry: Registry, cache: PipelineCache, model: str, pipeline: str
) -> None:
    preset = registry.get(model)
    base = TextToImage.for_preset(preset, "a house", seed=3)
    request = GuidedRequest(base, Control("canny", source_image()), controlnet_for(registry, preset, "canny"))
    result = guided(cache, preset, request)

    assert result.pipeline == pipeline
    assert result.condition is not None
    expected = expected_canny(source_image())
    assert np.asarray(expected).any()  # the test image has edges to find
    assert pixel_sha256(result.condition) == pixel_sha256(expected)
    assert result.images[0].size == (64, 64)

    weaker = guided(
        cache, preset, GuidedRequest(base, Control("canny", source_image(), weight=0.0), request.controlnet)
    )
    assert not np.array_equal(np.asarray(weaker.images[0]), np.asarray(result.images[0]))


def test_depth_is_computed_by_the_annotator_and_a_given_condition_is_used_as_is(
    registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get("tiny")
    base = TextToImage.for_preset(preset, "a house", seed=3)
    depth = GuidedRequest(
        base,
        Control("depth", source_image()),
        controlnet_for(registry, preset, "depth"),
        annotator_for(registry, "depth", tiny=True),
    )
    result = guided(cache, preset, depth)
    grey = np.asarray(result.condition)
    assert grey.min() == 0 and grey.max() == 255  # normalised to the full range
    assert "tiny-depth" in cache.loaded()

    pose = source_image()
    given = GuidedRequest(
        base, Control("openpose", pose, given=True), controlnet_for(registry, preset, "openpose")
    )
    assert pixel_sha256(guided(cache, preset, given).condition) == pixel_sha256(pose)


def test_openpose_cannot_be_computed_and_a_model_without_controlnets_is_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="openpose cannot be computed"):
        annotator_for(registry, "openpose", tiny=True)
    with pytest.raises(ValueError, match="tiny-flux has no ControlNet for canny"):
        controlnet_for(registry, registry.get("tiny-flux"), "canny")


def test_hires_gives_one_and_a_half_times_the_native_size_in_two_passes(
    registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get("tiny")
    width, height, hires = hires_plan(preset, 64, 64, 1.5)
    assert (width, height) == (96, 96)
    events: list[tuple[int, int]] = []
    request = GuidedRequest(
        TextToImage.for_preset(preset, "a house", width=width, height=height), hires=hires
    )
    result = guided(cache, preset, request, lambda step, total, preview: events.append((step, total)))

    assert result.images[0].size == (96, 96)
    assert result.passes == [(64, 64, 4), (96, 96, 2)]  # strength 0.5 of 4 steps
    assert events == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 2), (2, 2)]


def test_hires_is_the_default_above_the_native_resolution_at_the_aspect_ratio(registry: Registry) -> None:
    tiny, sd15 = registry.get("tiny"), registry.get("sd15")
    assert hires_plan(tiny, 64, 64, None)[2] is None
    # 4:3 on tiny: natively 88x64 (the short side is held at the 64 px minimum), so 128x96 is above it
    assert hires_plan(tiny, 128, 96, None) == (128, 96, Hires(88, 64))
    assert hires_plan(tiny, 128, 64, None)[2] is None  # 2:1 at the minimum short side: tiny's native 2:1
    assert hires_plan(sd15, 768, 768, None) == (768, 768, Hires(512, 512))
    assert hires_plan(sd15, 680, 384, None)[2] is None  # --ar 16:9 on SD 1.5: its native pixel count
    assert hires_plan(sd15, 768, 768, 1.0) == (768, 768, None)  # --hires 1: off
    with pytest.raises(ValueError, match=r"hires must be 1 \(off"):
        hires_plan(sd15, 768, 768, 0.5)


def test_references_change_the_image_and_leave_the_plain_pipeline_as_it_was(
    registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get("tiny")
    base = TextToImage.for_preset(preset, "a house", seed=3)
    adapter = adapter_for(registry, preset)
    plain = guided(cache, preset, GuidedRequest(base)).images[0]
    blend = tuple(Reference(source_image().rotate(90 * i), "blend") for i in range(3))
    blended = guided(cache, preset, GuidedRequest(base, references=blend, adapter=adapter))
    styled = guided(
        cache,
        preset,
        GuidedRequest(base, references=(Reference(source_image(), "style", 0.8),), adapter=adapter),
    )

    assert not np.array_equal(np.asarray(blended.images[0]), np.asarray(plain))
    assert not np.array_equal(np.asarray(styled.images[0]), np.asarray(plain))
    assert np.array_equal(np.asarray(guided(cache, preset, GuidedRequest(base)).images[0]), np.asarray(plain))
    assert cache.get(preset).unet.encoder_hid_proj is None


def test_guidance_models_count_in_the_pipeline_budget(registry: Registry, tiny_cache: Path) -> None:
    preset = registry.get("tiny")
    small = PipelineCache(cache_dir=tiny_cache, device=torch.device("cpu"), dtype=torch.float32)
    base = TextToImage.for_preset(preset, "a house", seed=3)
    guided(
        small,
        preset,
        GuidedRequest(base, Control("canny", source_image()), controlnet_for(registry, preset, "canny")),
    )
    assert small.loaded() == ["tiny-controlnet-canny", "tiny"]
    sizes = small.sizes()
    assert sizes["tiny-controlnet-canny"] > 0
    assert small.resident_bytes == sum(sizes.values())
    small.budget = small.resident_bytes  # room for exactly what is resident
    guided(
        small,
        preset,
        GuidedRequest(base, Control("canny", source_image()), controlnet_for(registry, preset, "canny")),
    )
    assert small.evictions == 0
    other = controlnet_for(registry, preset, "depth")
    guided(small, preset, GuidedRequest(base, Control("depth", source_image(), given=True), other))
    assert "tiny-controlnet-canny" not in small.loaded()  # the least recently used made room
    assert small.evictions >= 1


def test_bad_guidance_is_refused_before_anything_loads(registry: Registry, tiny_cache: Path) -> None:
    preset = registry.get("tiny")
    untouched = PipelineCache(cache_dir=tiny_cache, device=torch.device("cpu"), dtype=torch.float32)
    base = TextToImage.for_preset(preset, "a house")
    cases = [
        (
            GuidedRequest(
                base, Control("canny", source_image(), weight=2.5), controlnet_for(registry, preset, "canny")
            ),
            "control weight must be between 0 and 2",
        ),
        (
            GuidedRequest(
                base,
                references=tuple(Reference(source_image(), "blend") for _ in range(6)),
                adapter=adapter_for(registry, preset),
            ),
            "a blend takes 2 to 5 images",
        ),
        (
            GuidedRequest(
                base,
                references=(Reference(source_image(), "style", -1.0),),
                adapter=adapter_for(registry, preset),
            ),
            "style reference weight",
        ),
    ]
    for request, message in cases:
        with pytest.raises(ValueError, match=message):
            guided(untouched, preset, request)
    assert untouched.loaded() == []


def test_describe_gives_four_prompts_of_caption_and_style_words(
    registry: Registry, cache: PipelineCache
) -> None:
    from engine.describe import STYLE_WORDS, describe

    captioner, interrogator = registry.get("tiny-captioner"), registry.get("tiny-clip")
    prompts = describe(cache, captioner, interrogator, source_image())
    assert len(prompts) == 4 and len(set(prompts)) == 4
    styles = [prompt.rsplit(", ", 2)[1:] for prompt in prompts]
    used = [word for pair in styles for word in pair]
    assert set(used) <= set(STYLE_WORDS) and len(set(used)) == 8  # each prompt its own pair
    assert describe(cache, captioner, interrogator, source_image()) == prompts  # deterministic
    assert {"tiny-captioner", "tiny-clip"} <= set(cache.loaded())
