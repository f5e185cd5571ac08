"""The uniform safety classifiers (issue 17, item 2): the image classifier runs on every model's outputs (SDXL
and Flux included), beside the SD 1.5 checker where there is one; the prompt classifier scores text. Their tiny
counterparts score 0.5 (nothing flagged), the -strict ones flag everything; the per-image cost is measured."""

from __future__ import annotations

import time

from engine.classifiers import image_scores
from engine.engine import Engine
from engine.generate import TextToImage
from engine.registry import Registry

REQUEST = TextToImage(
    prompt="a fox", negative="", width=64, height=64, steps=2, guidance=6.0, seed=3, count=2
)


def test_every_family_is_classified_and_the_strict_classifier_flags_sdxl_and_flux(
    engine: Engine, registry: Registry
) -> None:
    sdxl, sdxl_strict = registry.get("tiny-sdxl"), registry.get("tiny-sdxl-strict")
    images = engine.txt2img(sdxl, REQUEST)
    assert engine.safety_flags(sdxl, images) == [False, False]
    assert engine.safety_flags(sdxl_strict, images) == [True, True]
    assert engine.safety_flags(registry.get("tiny-flux-strict"), images) == [True, True]
    assert engine.safety_flags(registry.get("tiny-flux"), images) == [False, False]
    # A tiny model gets the tiny classifier; a real one the real preset (never downloaded here).
    assert registry.image_classifier(sdxl).name == "tiny-nsfw-vit"
    assert registry.image_classifier(registry.get("sdxl")).name == "nsfw-vit"
    assert registry.image_classifier(sdxl_strict).name == "tiny-nsfw-vit-strict"


def test_the_tiny_classifier_scores_half_and_costs_about_a_millisecond(
    engine: Engine, registry: Registry
) -> None:
    classifier = registry.get("tiny-nsfw-vit")
    images = engine.txt2img(registry.get("tiny-sdxl"), REQUEST)
    assert image_scores(engine.cache, classifier, images) == [0.5, 0.5]
    started = time.perf_counter()
    for _ in range(20):
        image_scores(engine.cache, classifier, images[:1])
    per_image = (time.perf_counter() - started) / 20
    print(f"tiny image classifier: {per_image * 1000:.2f} ms per image")
    assert per_image < 0.05  # generous for a loaded 2-core machine; measured ~1 ms


def test_prompt_classifier_scores_and_its_strict_twin_refuses(engine: Engine, registry: Registry) -> None:
    plain, strict = registry.get("tiny-nsfw-prompt"), registry.get("tiny-nsfw-prompt-strict")
    assert engine.prompt_score(plain, "a lighthouse at dusk") == 0.5 < plain.safety_threshold
    assert engine.prompt_score(strict, "a lighthouse at dusk") >= strict.safety_threshold
