"""What a text-to-image request is, independent of how it runs: a plain value that crosses thread boundaries.

Kept free of torch so the job layer can build requests without loading the GPU stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.lora import LoraWeights, check_loras

if TYPE_CHECKING:
    from PIL import Image

    from engine.registry import Preset

MAX_SEED = 2**63 - 1
"""Largest seed accepted (image i uses seed + i): every seed fits a signed 64-bit database column."""

DEFAULT_HIRES_STRENGTH = 0.5
"""How far the hires fix's second pass re-denoises the upscaled first pass (half its steps run)."""

ProgressFn = Callable[[int, int, "Image.Image | None"], None]
"""Called after each denoising step with (step counted from 1, total steps, a cheap preview or None).

It may raise to cancel the generation: the exception propagates out of `Engine.txt2img`.
"""


class Preempted(Exception):
    """Raised by a progress callback to stop a generation so that it resumes later (the relax lane, jobs.relax):
    the engine sets `latents` to the request's latents after `step` (on the CPU), from which a request with
    `resume=Resume(step, latents)` goes on. `by`: what it gave way to (a job id), for the record."""

    def __init__(self, step: int, total: int, by: str = "") -> None:
        super().__init__(f"pre-empted after step {step} of {total}")
        self.step, self.total, self.by = step, total, by
        self.latents: Any = None


@dataclass(frozen=True, eq=False)
class Resume:
    """Where a pre-empted request goes on from: the latents (a tensor, all of its images) after `step` of its
    steps. Compared by identity, so a resumed request never shares a batch."""

    step: int
    latents: Any


@dataclass(frozen=True)
class Hires:
    """Hires fix: the first pass at `width`x`height`, then its pixels upscaled to the request's size and
    denoised again from `strength` in an image-to-image pass (`engine.hires`)."""

    width: int
    height: int
    strength: float = DEFAULT_HIRES_STRENGTH


@dataclass(frozen=True)
class TextToImage:
    """One text-to-image request. Image i is drawn with its own generator seeded `seed + i`, so a seed gives
    the same image alone or anywhere in a batch. `loras`: (name, weight) pairs applied for this request only;
    `tile`: the image tiles seamlessly; `hires`: made through the hires fix, the first pass smaller (its
    progress reported first, then the second pass's)."""

    prompt: str
    negative: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    count: int
    loras: LoraWeights = ()
    tile: bool = False  # seamless tiling: circular padding in the denoiser and VAE (engine.seamless)
    hires: Hires | None = None
    resume: Resume | None = None  # go on from a pre-empted run's latents (engine.batching), not from noise

    @classmethod
    def for_preset(
        cls,
        preset: Preset,
        prompt: str,
        *,
        negative: str = "",
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        count: int = 1,
        loras: LoraWeights = (),
    ) -> TextToImage:
        """A request with the preset's defaults for every value left out."""
        return cls(
            prompt=prompt,
            negative=negative,
            width=preset.default_width if width is None else width,
            height=preset.default_height if height is None else height,
            steps=preset.default_steps if steps is None else steps,
            guidance=preset.default_guidance if guidance is None else guidance,
            seed=seed,
            count=count,
            loras=tuple(loras),
        )


def check_request(preset: Preset, request: TextToImage) -> None:
    """Raise ValueError when `request` does not fit `preset`; run before any model is loaded."""
    if preset.role != "txt2img":
        raise ValueError(f"model {preset.name!r} is a {preset.role} model, not a txt2img one")
    preset.check(
        width=request.width,
        height=request.height,
        steps=request.steps,
        count=request.count,
        guidance=request.guidance,
        negative=request.negative,
    )
    if not 0 <= request.seed <= MAX_SEED - request.count:
        raise ValueError(f"seed must be between 0 and {MAX_SEED - request.count} (got {request.seed})")
    check_loras(request.loras)
    if request.hires is not None:
        check_hires_pass(preset, request.hires, steps=request.steps, count=request.count)
    if request.resume is not None:
        if request.hires is not None:
            raise ValueError("a pre-empted generation resumes only without the hires fix")
        if not 0 < request.resume.step < request.steps:
            raise ValueError(
                f"a generation of {request.steps} steps cannot resume after step {request.resume.step}"
            )
    if request.tile and preset.family == "flux":
        raise ValueError(
            f"{preset.name} can't tile seamlessly (its denoiser has no convolutions): remove --tile"
        )


def check_hires_pass(preset: Preset, hires: Hires, *, steps: int, count: int) -> None:
    """Raise ValueError when the hires fix's first pass does not fit `preset` or its strength is out of range."""
    preset.check(width=hires.width, height=hires.height, steps=steps, count=count)
    if not 0 < hires.strength <= 1:
        raise ValueError(f"hires strength must be above 0, at most 1 (got {hires.strength:g})")
