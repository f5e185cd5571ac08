"""Inpainting and variations in the engine, on every tiny family: sizes, kept pixels, seeds and progress."""

from __future__ import annotations

import numpy as np
import pytest
from edit_support import beyond_band, box_mask, noise_image
from PIL import Image

from engine.cache import PipelineCache
from engine.canvas import Extend, feather_width
from engine.edit import inpaint, vary
from engine.edit_requests import InpaintRequest, VariationRequest
from engine.registry import Registry

INPAINT_PRESETS = ["tiny-inpaint", "tiny-sdxl-inpaint", "tiny-flux-fill"]


def request(
    preset, mode: str, image: Image.Image, mask: Image.Image | None = None, **extra
) -> InpaintRequest:
    values = {
        "prompt": "a red kite",
        "negative": "",
        "steps": 3,
        "guidance": preset.default_guidance,
        "seed": 7,
    }
    return InpaintRequest(mode=mode, image=image, mask=mask, **{**values, **extra})


@pytest.mark.parametrize("name", INPAINT_PRESETS)
def test_insertion_keeps_the_size_and_the_pixels_beyond_the_band_on_every_family(
    name: str, registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get(name)
    image, mask = noise_image(72, 56), box_mask((72, 56), (10, 30, 30, 50))
    [out] = inpaint(cache, preset, request(preset, "insertion", image, mask))
    assert out.size == image.size
    kept = beyond_band(mask, feather_width(image.size))
    assert np.array_equal(np.asarray(out)[kept], np.asarray(image)[kept])
    inside = np.asarray(mask) == 255
    assert not np.array_equal(np.asarray(out)[inside], np.asarray(image)[inside])


@pytest.mark.parametrize("name", INPAINT_PRESETS)
def test_outpaint_grows_by_exactly_the_extension_on_every_family(
    name: str, registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get(name)
    image = noise_image(50, 40)
    extend = Extend(left=3, right=17, top=0, bottom=9)
    [out] = inpaint(cache, preset, request(preset, "outpaint", image, extend=extend, prompt=""))
    assert out.size == (50 + 3 + 17, 40 + 9)
    # The column of the image furthest from the new area is the original's.
    assert np.array_equal(np.asarray(out)[:30, 3 + 10], np.asarray(image)[:30, 10])


def test_removal_reports_the_steps_it_runs_and_keeps_every_pixel_beyond_the_band(
    registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get("tiny-inpaint")
    image, mask = noise_image(64, 64), box_mask((64, 64), (20, 20, 36, 44))
    reports: list[tuple[int, int, Image.Image | None]] = []
    outs = inpaint(
        cache,
        preset,
        request(preset, "removal", image, mask, prompt="", steps=4, count=2),
        lambda step, total, preview: reports.append((step, total, preview)),
    )
    assert [(step, total) for step, total, _ in reports] == [(1, 3), (2, 3), (3, 3)]  # strength 0.85 of 4
    assert reports[-1][2] is not None and reports[-1][2].size == (8, 8)
    kept = beyond_band(mask, feather_width(image.size))
    for out in outs:
        assert np.array_equal(np.asarray(out)[kept], np.asarray(image)[kept])
    assert outs[0].tobytes() != outs[1].tobytes()  # image 1 has its own seed


def test_an_inpaint_request_for_another_role_is_refused_before_loading(
    registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get("tiny")
    misses = cache.misses
    with pytest.raises(ValueError, match="not an inpainting one"):
        inpaint(cache, preset, request(preset, "outpaint", noise_image(64, 64), extend=Extend(left=8)))
    assert cache.misses == misses


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_vary_keeps_the_size_and_repeats_with_a_seed_on_every_family(
    name: str, registry: Registry, cache: PipelineCache
) -> None:
    preset = registry.get(name)
    image = noise_image(70, 50)
    reports: list[tuple[int, int]] = []

    def run(seed: int) -> Image.Image:
        variation = VariationRequest(
            image=image,
            prompt="a harbour",
            negative="",
            strength=0.5,
            steps=4,
            guidance=preset.default_guidance,
            seed=seed,
        )
        return vary(cache, preset, variation, lambda step, total, _: reports.append((step, total)))[0]

    first, again, other = run(3), run(3), run(4)
    assert first.size == (70, 50)
    assert first.tobytes() == again.tobytes() and first.tobytes() != other.tobytes()
    assert reports[:2] == [(1, 2), (2, 2)]  # strength 0.5 of 4 steps


def test_vary_shares_the_resident_text_to_image_weights(registry: Registry, cache: PipelineCache) -> None:
    preset = registry.get("tiny")
    variation = VariationRequest(
        image=noise_image(64, 64), prompt="", negative="", strength=1.0, steps=2, guidance=7.5, seed=0
    )
    vary(cache, preset, variation)
    misses = cache.misses
    vary(cache, preset, variation)
    assert cache.misses == misses  # no second load: the img2img pipeline is built from the cached one
