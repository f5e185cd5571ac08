"""Plain text-to-image through the hires fix (`TextToImage.hires`): two passes visible in the progress, the size
asked for, every family; batches group only requests with the same hires plan, and a batch's images equal
their lone selves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image
from PIL import Image

from engine.engine import Engine, TextToImage
from engine.generate import Hires
from engine.registry import Registry

TOLERANCE = 3  # as tests/lora_batch: batched matrix products round differently in the last bit of a pixel


def _hires(
    registry: Registry, name: str, hires: Hires | None = Hires(64, 64), **options: object
) -> TextToImage:
    """A 128² request of 4 steps on `name`, through `hires` (None: directly)."""
    chosen = {"width": 128, "height": 128, "steps": 4, "seed": 5} | options
    return replace(TextToImage.for_preset(registry.get(name), "a house", **chosen), hires=hires)


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_a_hires_request_runs_two_passes_and_gives_the_size_asked_for(
    engine: Engine, registry: Registry, name: str
) -> None:
    events: list[tuple[int, int, tuple[int, int] | None]] = []
    [image] = engine.txt2img(
        registry.get(name),
        _hires(registry, name),
        lambda step, total, preview: events.append((step, total, None if preview is None else preview.size)),
    )
    assert image.size == (128, 128)
    # the first pass's 4 steps at 64², then the second's 2 (strength 0.5) at 128²; each with its preview
    assert [(step, total) for step, total, _ in events] == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 2), (2, 2)]
    assert all(size is not None for _, _, size in events)


def test_the_second_pass_is_image_to_image_of_the_upscaled_first(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    [first] = engine.txt2img(preset, _hires(registry, "tiny", None, width=64, height=64))
    [hires] = engine.txt2img(preset, _hires(registry, "tiny"))
    # diffusers' own image-to-image on the resident pipeline, from the first pass upscaled, with the same seed
    img2img = AutoPipelineForImage2Image.from_pipe(engine.cache.get(preset))
    [expected] = img2img(
        prompt=["a house"],
        image=[first.resize((128, 128), Image.Resampling.LANCZOS)],
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=preset.default_guidance,
        generator=[torch.Generator("cpu").manual_seed(5)],
    ).images
    assert np.array_equal(np.asarray(hires), np.asarray(expected))


def test_one_step_still_runs_a_second_pass(engine: Engine, registry: Registry) -> None:
    events: list[tuple[int, int]] = []
    engine.txt2img(
        registry.get("tiny"), _hires(registry, "tiny", steps=1), lambda s, t, p: events.append((s, t))
    )
    assert events == [(1, 1), (1, 1)]


def test_batches_group_only_requests_with_the_same_hires_plan(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    direct = _hires(registry, "tiny", None)
    keys = {
        engine.batch_key(preset, request)
        for request in (direct, _hires(registry, "tiny"), _hires(registry, "tiny", Hires(64, 72)))
    }
    assert len(keys) == 3
    assert engine.batch_key(preset, _hires(registry, "tiny", seed=9)) == engine.batch_key(
        preset, _hires(registry, "tiny")
    )
    with pytest.raises(ValueError, match="a batch needs requests"):
        engine.txt2img_batch(preset, [direct, _hires(registry, "tiny")])


def test_a_hires_batch_gives_each_request_its_lone_images_and_drops_a_cancelled_one(
    engine: Engine, registry: Registry
) -> None:
    preset = registry.get("tiny")
    requests = [
        _hires(registry, "tiny", seed=1),
        _hires(registry, "tiny", seed=2, count=2),
        _hires(registry, "tiny", seed=3),
    ]
    alone = [engine.txt2img(preset, request) for request in requests]
    seen: list[list[tuple[int, int]]] = [[], [], []]

    def report(member: int):
        def progress(step: int, total: int, preview: object) -> None:
            seen[member].append((step, total))
            if member == 1 and total == 2:  # cancelled in the second pass
                raise KeyboardInterrupt("cancelled")

        return progress

    results = engine.txt2img_batch(preset, requests, [report(m) for m in range(3)])
    assert isinstance(results[1], KeyboardInterrupt)
    assert seen[1] == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 2)]
    for member in (0, 2):
        assert seen[member] == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 2), (2, 2)]
        [batched], [lone] = results[member], alone[member]
        assert batched.size == (128, 128)
        assert (
            np.abs(np.asarray(batched, dtype=np.int16) - np.asarray(lone, dtype=np.int16)).max() <= TOLERANCE
        )


def test_a_first_pass_that_does_not_fit_the_model_is_refused_before_loading(
    engine: Engine, registry: Registry
) -> None:
    with pytest.raises(ValueError, match="below the minimum"):
        engine.txt2img(registry.get("tiny"), _hires(registry, "tiny", Hires(64, 32)))
