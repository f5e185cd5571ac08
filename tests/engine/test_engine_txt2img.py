"""Text-to-image on the tiny presets: sizes, progress, seeds, and requests refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.engine import Engine, TextToImage
from engine.registry import Registry

TINY_PRESETS = ["tiny", "tiny-sdxl", "tiny-flux"]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("name", TINY_PRESETS)
@pytest.mark.parametrize(("width", "height"), [(64, 64), (64, 96), (128, 64)])
def test_images_have_the_requested_size_and_count(
    engine: Engine, registry: Registry, name: str, width: int, height: int
) -> None:
    preset = registry.get(name)
    request = TextToImage.for_preset(
        preset, "a red fox in the snow", width=width, height=height, count=2, seed=3
    )
    images = engine.txt2img(preset, request)
    assert [(image.size, image.mode) for image in images] == [((width, height), "RGB")] * 2
    assert _pixels(images[0]).std() > 0  # a picture, not a flat fill
    assert not np.array_equal(_pixels(images[0]), _pixels(images[1]))


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_progress_is_reported_after_every_step_with_a_preview(
    engine: Engine, registry: Registry, name: str
) -> None:
    preset = registry.get(name)
    calls: list[tuple[int, int, tuple[int, int] | None]] = []
    request = TextToImage.for_preset(preset, "a lighthouse", width=64, height=96, steps=5, seed=1)
    engine.txt2img(
        preset, request, lambda step, total, preview: calls.append((step, total, preview and preview.size))
    )
    # Previews have the latent's resolution: 1/8 of the image's side.
    assert calls == [(step, 5, (8, 12)) for step in range(1, 6)]


def test_previews_can_be_thinned_or_switched_off(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    request = TextToImage.for_preset(preset, "a lighthouse", steps=5)
    every_second: list[tuple[int, bool]] = []
    engine.txt2img(
        preset,
        request,
        lambda step, _, preview: every_second.append((step, preview is not None)),
        preview_every=2,
    )
    assert every_second == [(1, False), (2, True), (3, False), (4, True), (5, True)]
    none: list[object] = []
    engine.txt2img(preset, request, lambda *args: none.append(args[2]), preview_every=0)
    assert none == [None] * 5


def test_raising_from_progress_cancels_the_generation(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    steps: list[int] = []

    def cancel_after_two(step: int, total: int, preview: Image.Image | None) -> None:
        steps.append(step)
        if step == 2:
            raise KeyboardInterrupt("cancelled by the user")

    with pytest.raises(KeyboardInterrupt):
        engine.txt2img(preset, TextToImage.for_preset(preset, "a lighthouse", steps=10), cancel_after_two)
    assert steps == [1, 2]


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_a_seed_gives_the_same_image_alone_or_in_a_batch(
    engine: Engine, registry: Registry, name: str
) -> None:
    preset = registry.get(name)
    batch = engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", seed=40, count=3))
    alone = engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", seed=41))[0]
    # Batched matrix products may round differently in the last bit, so allow one level on a few pixels.
    assert np.abs(_pixels(batch[1]) - _pixels(alone)).max() <= 1
    assert np.abs(_pixels(batch[0]) - _pixels(alone)).max() > 10


def test_the_negative_prompt_is_used(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    plain = engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", seed=5))[0]
    negative = engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", seed=5, negative="blurry"))[
        0
    ]
    assert not np.array_equal(_pixels(plain), _pixels(negative))


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("tiny", {"width": 1024}, "width 1024 exceeds tiny's limit of 512"),
        ("tiny", {"steps": 0}, "steps must be between 1 and 50"),
        ("tiny", {"count": 5}, "count must be between 1 and 4"),
        ("tiny", {"seed": -1}, "seed must be between 0 and"),
        ("tiny-flux", {"height": 72}, "height 72 is not a multiple of 16"),
        ("tiny-flux", {"negative": "blurry"}, "tiny-flux does not use a negative prompt"),
    ],
)
def test_bad_requests_are_refused_before_loading_anything(
    registry: Registry, tiny_cache: Path, name: str, changes: dict, message: str
) -> None:
    engine = Engine(registry, tiny_cache, device="cpu")
    preset = registry.get(name)
    request = TextToImage(**(vars(TextToImage.for_preset(preset, "a red fox")) | changes))
    with pytest.raises(ValueError, match=message):
        engine.txt2img(preset, request)
    assert (engine.cache.misses, engine.cache.loaded()) == (0, [])
