"""Pre-emption and resume (the relax lane, jobs.relax): a generation stopped between steps by its progress
callback hands back its latents, and a request resumed from them gives the image an uninterrupted run gives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.engine import Engine
from engine.generate import Hires, Preempted, Resume, TextToImage
from engine.registry import Registry


def _stop_after(step_to_stop: int, steps_seen: list[int]):
    def report(step: int, total: int, preview) -> None:
        steps_seen.append(step)
        if step == step_to_stop:
            raise Preempted(step, total, by="a fast job")

    return report


def _pixels(images) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-flux"])  # DDIM, Euler, flow-matching Euler
def test_a_generation_resumed_from_its_latents_gives_the_uninterrupted_image(
    engine: Engine, registry: Registry, model: str
) -> None:
    preset = registry.get(model)
    assert engine.resumable(preset)
    request = TextToImage.for_preset(preset, "a lighthouse at dawn", steps=12, seed=7, count=2)
    whole = engine.txt2img(preset, request)

    seen: list[int] = []
    with pytest.raises(Preempted) as stopped:
        engine.txt2img(preset, request, _stop_after(5, seen))
    assert seen == [1, 2, 3, 4, 5]  # stopped after the step it was on
    latents = stopped.value.latents
    assert latents is not None and latents.shape[0] == 2  # both images' latents

    resumed_steps: list[int] = []
    resumed = engine.txt2img(
        preset,
        replace(request, resume=Resume(stopped.value.step, latents)),
        lambda step, total, preview: resumed_steps.append((step, total)),
    )
    assert resumed_steps == [(step, 12) for step in range(6, 13)]  # only the remaining steps ran
    difference = np.abs(_pixels(resumed) - _pixels(whole)).max()
    assert difference == 0, f"the resumed images differ by up to {difference} levels"


def test_a_request_cannot_resume_outside_its_steps_or_with_the_hires_fix(
    engine: Engine, registry: Registry
) -> None:
    preset = registry.get("tiny")
    request = TextToImage.for_preset(preset, "x", steps=4)
    with pytest.raises(ValueError, match="cannot resume after step 4"):
        engine.txt2img(preset, replace(request, resume=Resume(4, None)))
    hires = replace(request, width=128, height=128, hires=Hires(64, 64))
    with pytest.raises(ValueError, match="only without the hires fix"):
        engine.txt2img(preset, replace(hires, resume=Resume(2, None)))
