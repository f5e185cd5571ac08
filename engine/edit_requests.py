"""What an edit request is (inpaint in one of three modes, or a variation) and whether a preset can run it.

Plain values, free of torch like `engine.generate`, so the job layer validates a request with the checks the
engine itself runs before loading anything.

Decisions, per mode (strength is how much of the starting image is noised away; 1 = all of it):
- insertion: the prompt is painted into the mask, from pure noise (strength 1).
- removal: no prompt needed. The hole is first filled from its surroundings (OpenCV's Telea inpainting), then
  the model reworks that fill at strength `REMOVAL_STRENGTH`, prompted for plain background and, where the
  model reads one, with a negative prompt naming the things people usually remove. Starting from the
  surroundings rather than from noise is what keeps the model from inventing a new object in the hole.
- outpaint: the canvas grows by the amounts asked, painted at its own size when the model allows it, else scaled
  down into the model's limits and enlarged after (`engine.canvas.outpaint_geometry`); the new area starts as
  the image's edge pixels stretched outwards and is painted from noise (strength 1), guided by the optional
  prompt. The source's own pixels are kept exactly, at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from engine.canvas import Extend, outpaint_geometry, prepare_mask, work_size
from engine.generate import MAX_SEED

if TYPE_CHECKING:
    from PIL import Image

    from engine.registry import Preset

Mode = Literal["insertion", "removal", "outpaint"]
MODES: tuple[str, ...] = ("insertion", "removal", "outpaint")

REMOVAL_STRENGTH = 0.85
REMOVAL_PROMPT = "empty background, seamless continuation of the surroundings"
REMOVAL_NEGATIVE = "object, person, animal, text, watermark, logo"

DEFAULT_VARIATION_STRENGTH = 0.6


@dataclass(frozen=True)
class InpaintRequest:
    """Repaint part of `image`: the white area of `mask` (insertion, removal) or the area `extend` adds
    (outpaint). Image i is drawn with its own generator seeded `seed + i`, as in text-to-image."""

    mode: Mode
    image: Image.Image
    mask: Image.Image | None
    prompt: str
    negative: str
    steps: int
    guidance: float
    seed: int
    count: int = 1
    extend: Extend = field(default_factory=Extend)

    @property
    def strength(self) -> float:
        return REMOVAL_STRENGTH if self.mode == "removal" else 1.0


@dataclass(frozen=True)
class VariationRequest:
    """Image-to-image: `image` noised by `strength` (0 keeps it, 1 forgets it) and denoised with `prompt`."""

    image: Image.Image
    prompt: str
    negative: str
    strength: float
    steps: int
    guidance: float
    seed: int
    count: int = 1


def check_inpaint(preset: Preset, request: InpaintRequest) -> None:
    """Raise ValueError naming what `request` gets wrong for `preset`; run before any model is loaded."""
    if preset.role != "inpaint":
        raise ValueError(f"model {preset.name!r} is a {preset.role} model, not an inpainting one")
    if request.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {request.mode!r})")
    if request.mode == "outpaint":
        if request.mask is not None:
            raise ValueError("outpaint makes its own mask from the extension: leave the mask out")
        size = outpaint_geometry(preset, request.image.size, request.extend).work
    else:
        if request.extend.any:
            raise ValueError(f"{request.mode} repaints inside the image: extend is for outpaint only")
        if request.mask is None:
            raise ValueError(f"{request.mode} needs a mask: white where the image should change")
        if request.mode == "insertion" and not request.prompt.strip():
            raise ValueError("insertion needs a prompt describing what to paint into the mask")
        prepare_mask(request.mask, request.image.size)
        size = work_size(preset, request.image.size)
    _check_common(preset, request, size, request.strength)


def check_variation(preset: Preset, request: VariationRequest) -> None:
    """Raise ValueError naming what `request` gets wrong for `preset` (a text-to-image preset)."""
    if preset.role != "txt2img":
        raise ValueError(f"model {preset.name!r} is a {preset.role} model, not a txt2img one")
    if not 0 < request.strength <= 1:
        raise ValueError(f"strength must be above 0 and at most 1 (got {request.strength:g})")
    _check_common(preset, request, work_size(preset, request.image.size), request.strength)


def _check_common(
    preset: Preset, request: InpaintRequest | VariationRequest, size: tuple[int, int], strength: float
) -> None:
    width, height = size
    preset.check(
        width=width,
        height=height,
        steps=request.steps,
        count=request.count,
        guidance=request.guidance,
        negative=request.negative,
    )
    if request.steps * strength < 1:
        raise ValueError(
            f"{request.steps} step(s) at strength {strength:g} leave no denoising step to run; "
            "raise the steps or the strength"
        )
    if not 0 <= request.seed <= MAX_SEED - request.count:
        raise ValueError(f"seed must be between 0 and {MAX_SEED - request.count} (got {request.seed})")
