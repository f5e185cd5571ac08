"""Midjourney's prompt parameters, mapped onto what a diffusion model has, each refused by name where the model
cannot do it:

- `--style NAME`: a named prompt template and negative prompt (`jobs.styles`); the expansion is the prompt the
  job records and runs.
- `--tile`: seamless tiling (circular padding in the denoiser's and the VAE's convolutions, `engine.seamless`).
  Flux's denoiser is a transformer with no padding to make circular: refused there.
- `--chaos 0–100`: variety between the images of one job. Image i > 0 runs alone with its guidance scaled by a
  factor drawn from its own seed within ±chaos/200 (so 100 spans 0.5× to 1.5×): the same seed gives the same
  images, and chaos 0 is a plain job. Guidance-distilled models (default guidance 0) have none to vary: refused.
- `--stylize 0–1000`: how far the model may stray from the prompt towards its own look, as guidance: 100 (the
  default) is the model's default guidance; 0 is 1.5× it (literal), 1000 is 0.5× it (loose). Refused, like
  chaos, on models without guidance, and together with an explicit --guidance.
- `--iw 0–2`: the weight of an image prompt (`/imagine` with an image) against the text, as image-to-image
  strength: 1 is the default strength 0.6, 0 is 0.9 (little of the image), 2 is 0.3 (mostly the image).
"""

from __future__ import annotations

import random

MAX_CHAOS = 100
MAX_STYLIZE = 1000
DEFAULT_STYLIZE = 100
MAX_IMAGE_WEIGHT = 2.0


def chaos_guidance(guidance: float, chaos: int, seed: int) -> float:
    """The guidance an image seeded `seed` runs at, under `chaos` (0: `guidance` itself)."""
    if not chaos:
        return guidance
    spread = chaos / (2 * MAX_CHAOS)
    return round(guidance * (1 + random.Random(seed).uniform(-spread, spread)), 4)


def image_guidance(guidance: float, chaos: int, seed: int, index: int) -> float:
    """The guidance image `index` of a job, seeded `seed`, runs at: the first at `guidance` itself, each other
    one varied by `chaos` (`jobs.functions` runs them so; a recipe records it, `jobs.recipe`)."""
    return guidance if index == 0 else chaos_guidance(guidance, chaos, seed)


def check_chaos(chaos: int, default_guidance: float, model: str) -> None:
    if isinstance(chaos, bool) or not isinstance(chaos, int) or not 0 <= chaos <= MAX_CHAOS:
        raise ValueError(f"--chaos must be a whole number from 0 to {MAX_CHAOS} (got {chaos})")
    if chaos and default_guidance <= 0:
        raise ValueError(f"{model} has no guidance to vary, so --chaos can't work there: remove it")


def stylize_guidance(stylize: int, default_guidance: float, model: str) -> float:
    """The guidance `--stylize` stands for on a model whose default guidance is `default_guidance`."""
    if isinstance(stylize, bool) or not isinstance(stylize, int) or not 0 <= stylize <= MAX_STYLIZE:
        raise ValueError(f"--stylize must be a whole number from 0 to {MAX_STYLIZE} (got {stylize})")
    if default_guidance <= 0:
        raise ValueError(f"{model} takes no guidance, so --stylize can't work there: remove it")
    if stylize <= DEFAULT_STYLIZE:
        factor = 1 + (DEFAULT_STYLIZE - stylize) / (2 * DEFAULT_STYLIZE)
    else:
        factor = 1 - 0.5 * (stylize - DEFAULT_STYLIZE) / (MAX_STYLIZE - DEFAULT_STYLIZE)
    return round(default_guidance * factor, 4)


def image_weight_strength(weight: float) -> float:
    """The image-to-image strength `--iw weight` stands for."""
    if not isinstance(weight, int | float) or not 0 <= weight <= MAX_IMAGE_WEIGHT:
        raise ValueError(f"--iw must be a number from 0 to {MAX_IMAGE_WEIGHT:g} (got {weight})")
    return round(0.9 - 0.3 * weight, 4)


def check_tile(tile: bool, family: str, model: str) -> None:
    if tile and family == "flux":
        raise ValueError(f"{model} can't tile seamlessly (its denoiser has no convolutions): remove --tile")
