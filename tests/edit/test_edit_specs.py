"""Inpaint and Vary specs: built and checked against the registry before anything is enqueued."""

from __future__ import annotations

import pytest
from edit_support import box_mask, noise_image

from engine.canvas import Extend
from engine.registry import Registry, UnknownModelError
from jobs.specs import Inpaint, Vary, inpaint_spec, vary_spec

IMAGE = noise_image(64, 64)
MASK = box_mask((64, 64), (8, 8, 24, 24))


def test_inpaint_uses_the_inpainting_default_or_its_tiny_counterpart(registry: Registry) -> None:
    spec = inpaint_spec(registry, mode="removal", image=IMAGE, mask=MASK, seed=3, image_key="k", mask_key="m")
    assert (spec.model, spec.steps, spec.guidance, spec.count) == ("sd15-inpaint", 25, 7.5, 1)
    tiny = inpaint_spec(
        registry, mode="outpaint", image=IMAGE, extend=Extend(top=16), tiny=True, random_seed=9
    )
    assert (tiny.model, tiny.seed, tiny.extend) == ("tiny-inpaint", 9, Extend(top=16))
    assert Inpaint.model_validate(tiny.model_dump(mode="json")) == tiny  # what the worker reads back
    assert tiny.model_dump(mode="json")["extend"] == {"left": 0, "right": 0, "top": 16, "bottom": 0}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"mode": "erase", "mask": MASK}, "mode must be one of insertion, removal, outpaint"),
        ({"mode": "outpaint", "mask": MASK, "extend": Extend(left=8)}, "leave the mask out"),
        ({"mode": "removal", "mask": MASK, "extend": Extend(left=8)}, "extend is for outpaint only"),
        ({"mode": "removal", "mask": MASK, "steps": 1}, "leave no denoising step"),
        ({"mode": "removal", "mask": MASK, "model": "flux-fill", "negative": "cars"}, "negative prompt"),
        ({"mode": "removal", "mask": MASK, "model": "sd15"}, "unknown inpaint model 'sd15'"),
        ({"mode": "removal", "mask": MASK, "count": 9}, "count must be between 1 and 4"),
        ({"mode": "removal", "mask": MASK, "seed": -1}, "seed must be between"),
    ],
)
def test_inpaint_requests_a_model_cannot_run_are_refused(
    registry: Registry, values: dict, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        inpaint_spec(registry, image=IMAGE, **values)


def test_vary_uses_the_text_to_image_preset(registry: Registry) -> None:
    spec = vary_spec(registry, image=IMAGE, strength=0.25, model="sdxl", seed=1, tiny=True, image_key="k")
    assert (spec.model, spec.strength, spec.image) == ("tiny-sdxl", 0.25, "k")
    assert Vary.model_validate(spec.model_dump(mode="json")) == spec
    with pytest.raises(UnknownModelError, match="unknown txt2img model 'sd15-inpaint'"):
        vary_spec(registry, image=IMAGE, model="sd15-inpaint")
    with pytest.raises(ValueError, match="4 step"):
        vary_spec(registry, image=IMAGE, strength=0.2, tiny=True)  # 4 steps x 0.2 leaves none
