"""Request specs: what a front-end asks a worker to do, validated before anything is enqueued.

A spec is plain data (pydantic), stored on the job record and read back by the worker. Builders such as
`imagine_spec` fill defaults from the model preset and check its limits, so a bad request fails with a message
that names the limit while the user is still there to read it, and nothing is enqueued.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from engine.registry import MIN_SIDE, Preset, Registry

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1


class Imagine(BaseModel):
    """Text-to-image: `count` images, image i seeded with `seed + i`."""

    kind: Literal["imagine"] = "imagine"
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative: str = Field("", max_length=MAX_PROMPT_CHARS)
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int = Field(ge=0, le=MAX_SEED)
    count: int


class ReplyTarget(BaseModel):
    """Where results go: the platform picks the worker-side replier, `data` is that replier's address book
    (channel, thread, interaction token, …). The CLI's target has no data: it follows the job's event stream."""

    platform: str
    data: dict = Field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    """`"768x512"` → (768, 512)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT, e.g. 768x512 (got {text!r})")
    return int(parts[0]), int(parts[1])


def size_for_aspect(preset: Preset, aspect: str) -> tuple[int, int]:
    """The size with the preset's default pixel count and the aspect ratio `"W:H"`, each side a multiple of the
    preset's step (8, or 16 for Flux), scaled up where needed so the short side is at least the minimum."""
    parts = aspect.split(":")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"aspect ratio must look like W:H, e.g. 16:9 (got {aspect!r})") from None
    if len(parts) != 2 or w <= 0 or h <= 0 or max(w / h, h / w) > 4:
        raise ValueError(f"aspect ratio must be W:H with both positive and at most 4:1 (got {aspect!r})")
    area = preset.default_width * preset.default_height
    height = math.sqrt(area * h / w)
    width = height * w / h
    scale = max(1.0, MIN_SIDE / min(width, height))
    step = preset.multiple_of
    return round(width * scale / step) * step, round(height * scale / step) * step


def imagine_spec(
    registry: Registry,
    *,
    prompt: str,
    negative: str = "",
    model: str | None = None,
    size: str | None = None,
    aspect: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    count: int | None = None,
    tiny: bool = False,
    random_seed: int = 0,
) -> Imagine:
    """Build and check an `Imagine` spec. Raises ValueError (UnknownModelError for a model) naming the limit.

    `random_seed` is used when `seed` is None; the caller draws it, so this function stays deterministic.
    """
    prompt = prompt.strip()
    if not prompt:
        raise ValueError("the prompt is empty: describe the image you want")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if len(negative) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"the negative prompt is {len(negative)} characters; the limit is {MAX_PROMPT_CHARS}"
        )
    if size is not None and aspect is not None:
        raise ValueError("give a size or an aspect ratio, not both")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED} (got {seed})")
    preset = registry.resolve(model, role="txt2img", tiny=tiny)
    if size is not None:
        width, height = parse_size(size)
    elif aspect is not None:
        width, height = size_for_aspect(preset, aspect)
    else:
        width, height = preset.default_width, preset.default_height
    steps = preset.default_steps if steps is None else steps
    count = 1 if count is None else count
    guidance = preset.default_guidance if guidance is None else guidance
    preset.check(width=width, height=height, steps=steps, count=count, guidance=guidance, negative=negative)
    return Imagine(
        prompt=prompt,
        negative=negative.strip(),
        model=preset.name,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=random_seed if seed is None else seed,
        count=count,
    )
