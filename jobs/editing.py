"""The editing loop's actions, defined once for both chats, the CLI and the API: from a source image (and the
job that made it) to the spec of a new job.

- Zoom Out (1.5×, 2×, or a custom factor from `MIN_ZOOM` to `MAX_ZOOM`): an outpaint on all four sides, the
  image centred; the border is painted with the source's prompt.
- Pan (left, right, up, down): an outpaint of one side by half the image's width or height.
- Make Square: an outpaint of the two short sides until the image is square.
- Vary (Subtle) and Vary (Strong): image-to-image at `VARY_STRENGTHS`.
- Upscale (Creative): the upscaler, then a low-strength image-to-image pass in tiles at the larger size.

What a derived job keeps from its source is its `Lineage`: the prompt, the text-to-image model (an outpaint runs
on the inpainting preset of the same family), the LoRAs (variations and creative upscales; the inpainting
pipelines run without them), and the seed of the image it was made from; `parent` records the source job.
Every builder validates with the engine's own checks and raises ValueError naming the problem, before
anything is stored or queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from engine.canvas import Extend
from engine.edit_requests import DEFAULT_VARIATION_STRENGTH
from engine.enhance_presets import upscale_factor
from engine.registry import Preset, Registry
from jobs.specs import (
    MAX_SEED,
    CreativeUpscale,
    Inpaint,
    Upscale,
    Vary,
    inpaint_spec,
    upscale_spec,
    vary_spec,
)

if TYPE_CHECKING:
    from PIL import Image as PILImage

VARY_STRENGTHS = {"subtle": 0.35, "strong": 0.8}
"""How much of the image each variation noises away: subtle keeps the composition and colours, strong keeps
little more than the layout."""

MIN_ZOOM, MAX_ZOOM = 1.1, 2.0  # Custom Zoom's range; the buttons zoom 1.5× and 2×
PAN_DIRECTIONS = ("left", "right", "up", "down")
CREATIVE_STRENGTH = 0.3
"""Upscale (Creative)'s image-to-image strength: enough for the model to draw texture into the enlarged image,
too little for it to change what the image shows."""


@dataclass(frozen=True)
class Lineage:
    """What a derived job inherits from the job (and image) it starts from. `parent` None: an image from outside
    (a file, a member's upload), which has no prompt, model or seed to keep."""

    parent: str | None = None
    prompt: str = ""
    negative: str = ""
    model: str | None = None  # the source's model of any role, or None
    loras: tuple[tuple[str, float], ...] = ()
    seed: int | None = None  # the seed of the source image
    count: int | None = None  # how many images the source job made

    @classmethod
    def of(cls, job_id: str, spec: dict, seed: int | None) -> Lineage:
        """The lineage of image seeded `seed` of job `job_id`, whose stored spec is `spec`."""
        return cls(
            parent=job_id,
            prompt=spec.get("prompt") or "",
            negative=spec.get("negative") or "",
            model=spec.get("model") or None,
            loras=tuple((name, float(weight)) for name, weight in spec.get("loras") or ()),
            seed=None if seed is None else int(seed) % (MAX_SEED + 1),
            count=spec.get("count"),
        )


def zoom_extend(size: tuple[int, int], factor: float) -> Extend:
    """The outpaint that zooms an image of `size` out by `factor`: every side grows, the image stays centred."""
    check_zoom(factor)
    width, height = size
    grow_x, grow_y = round(width * factor) - width, round(height * factor) - height
    return Extend(left=grow_x // 2, right=grow_x - grow_x // 2, top=grow_y // 2, bottom=grow_y - grow_y // 2)


def check_zoom(factor: float) -> None:
    if not isinstance(factor, int | float) or not math.isfinite(factor) or not MIN_ZOOM <= factor <= MAX_ZOOM:
        raise ValueError(f"the zoom factor must be between {MIN_ZOOM:g} and {MAX_ZOOM:g} (got {factor})")


def parse_zoom(text: str) -> float:
    """A zoom factor typed by a person ("1.5", "2x", "1,5"), checked."""
    cleaned = text.strip().lower().rstrip("x×").strip().replace(",", ".")
    try:
        factor = float(cleaned)
    except ValueError:
        raise ValueError(
            f"the zoom factor must be a number between {MIN_ZOOM:g} and {MAX_ZOOM:g}, e.g. 1.5 "
            f"(got {text.strip()[:20]!r})"
        ) from None
    check_zoom(factor)
    return factor


def pan_extend(size: tuple[int, int], direction: str) -> Extend:
    """The outpaint that pans an image of `size` in `direction`: that side grows by half the image."""
    width, height = size
    sides = {
        "left": ("left", width),
        "right": ("right", width),
        "up": ("top", height),
        "down": ("bottom", height),
    }
    if direction not in sides:
        raise ValueError(f"pan direction must be one of {', '.join(PAN_DIRECTIONS)} (got {direction!r})")
    side, length = sides[direction]
    return Extend(**{side: length // 2})


def square_extend(size: tuple[int, int]) -> Extend:
    """The outpaint that makes an image of `size` square: its short sides grow, the image stays centred."""
    width, height = size
    if width == height:
        raise ValueError(f"the image is already square ({width}x{height})")
    grow = abs(width - height)
    first, second = grow // 2, grow - grow // 2
    return Extend(top=first, bottom=second) if width > height else Extend(left=first, right=second)


def outpaint_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    extend: Extend,
    lineage: Lineage,
    prompt: str | None = None,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
) -> Inpaint:
    """Zoom, pan or make square (`extend` from the functions above) on `image`, painted with the lineage's prompt
    (or `prompt`, a remix) on the inpainting model of the source's family."""
    return inpaint_spec(
        registry,
        mode="outpaint",
        image=image,
        prompt=lineage.prompt if prompt is None else prompt,
        negative=lineage.negative,
        extend=extend,
        model=_inpaint_model(registry, lineage.model, tiny),
        seed=lineage.seed,
        tiny=tiny,
        random_seed=random_seed,
        image_key=image_key,
    ).model_copy(update={"parent": lineage.parent})


def variation_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    lineage: Lineage,
    strength: str | float = "subtle",
    prompt: str | None = None,
    count: int | None = None,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
) -> Vary:
    """Vary (Subtle) or (Strong) (`strength` by name, or a number from a remix) of `image` on the source's
    text-to-image model with its LoRAs, from the source image's seed."""
    if isinstance(strength, str):
        if strength not in VARY_STRENGTHS:
            raise ValueError(f"vary strength must be {' or '.join(VARY_STRENGTHS)} (got {strength!r})")
        strength = VARY_STRENGTHS[strength]
    model = _txt2img_model(registry, lineage.model)
    spec = vary_spec(
        registry,
        image=image,
        prompt=lineage.prompt if prompt is None else prompt,
        negative=lineage.negative,
        strength=strength,
        model=model,
        seed=lineage.seed,
        count=count,
        tiny=tiny,
        random_seed=random_seed,
        image_key=image_key,
    )
    return spec.model_copy(update={"parent": lineage.parent, "loras": _loras(model, lineage)})


def subtle_upscale_spec(
    registry: Registry, *, image: PILImage.Image, lineage: Lineage, tiny: bool = False, image_key: str = ""
) -> Upscale:
    """Upscale (Subtle): the default upscaler alone."""
    spec = upscale_spec(registry, image=image, tiny=tiny, image_key=image_key)
    return spec.model_copy(update={"parent": lineage.parent})


def creative_upscale_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    lineage: Lineage,
    strength: float = CREATIVE_STRENGTH,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
) -> CreativeUpscale:
    """Upscale (Creative): the default upscaler, then the source's text-to-image model (with its prompt and
    LoRAs) over the enlarged image at `strength`, one tile of the model's default size at a time."""
    upscale = upscale_spec(registry, image=image, tiny=tiny, image_key=image_key)
    upscaler = registry.get(upscale.model)
    model = _txt2img_model(registry, lineage.model)
    preset = registry.resolve(model, role="txt2img", tiny=tiny)
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be above 0 and at most 1 (got {strength:g})")
    steps = preset.default_steps
    if steps * strength < 1:
        raise ValueError(f"{preset.name}'s {steps} step(s) at strength {strength:g} leave no step to run")
    preset.check(
        width=preset.default_width,
        height=preset.default_height,
        steps=steps,
        count=1,
        guidance=preset.default_guidance,
        negative=lineage.negative,
    )
    return CreativeUpscale(
        image=image_key,
        width=image.width,
        height=image.height,
        upscaler=upscaler.name,
        scale=upscale_factor(upscaler),
        model=preset.name,
        prompt=lineage.prompt,
        negative=lineage.negative,
        strength=strength,
        steps=steps,
        guidance=preset.default_guidance,
        seed=random_seed if lineage.seed is None else lineage.seed,
        loras=list(_loras(preset.name, lineage)),
        parent=lineage.parent,
    )


def _txt2img_model(registry: Registry, model: str | None) -> str | None:
    """The source's model when it is a text-to-image one; else None (the default, e.g. for an upscaled image)."""
    preset = _preset(registry, model)
    return model if preset is not None and preset.role == "txt2img" else None


def _inpaint_model(registry: Registry, model: str | None, tiny: bool) -> str | None:
    """The inpainting preset for a source made by `model`: that model itself when it inpaints, else the
    inpainting preset of its family (a tiny one for a tiny model); None (the default) when there is none."""
    preset = _preset(registry, model)
    if preset is None:
        return None
    if preset.role == "inpaint":
        return preset.name
    if preset.role != "txt2img":
        return None
    default = registry.resolve(None, role="inpaint", tiny=tiny or preset.is_tiny)
    candidates = [default] + [registry.get(name) for name in registry.names("inpaint")]
    for candidate in candidates:
        if candidate.family == preset.family and candidate.is_tiny == preset.is_tiny:
            return candidate.name
    return None


def _loras(model: str | None, lineage: Lineage) -> list[tuple[str, float]]:
    """The source's LoRAs, kept only when the new job runs on the source's own model (they fit no other)."""
    return list(lineage.loras) if model is not None and model == lineage.model else []


def _preset(registry: Registry, model: str | None) -> Preset | None:
    if not model:
        return None
    try:
        return registry.get(model)
    except ValueError:
        return None  # a preset removed since the source ran: fall back to the defaults


@dataclass(frozen=True)
class LoopAction:
    """One button of the editing loop, the same in both chats: `name` goes into the button's id, `row` says
    which row of buttons it sits in, `remix` whether the member's remix mode opens a modal before it runs."""

    name: str
    label: str
    emoji: str | None
    row: int
    remix: bool


LOOP_ACTIONS: tuple[LoopAction, ...] = (
    LoopAction("vary_subtle", "Vary (Subtle)", "🪄", 0, remix=True),
    LoopAction("vary_strong", "Vary (Strong)", "🪄", 0, remix=True),
    LoopAction("upscale_subtle", "Upscale (Subtle)", None, 0, remix=False),
    LoopAction("upscale_creative", "Upscale (Creative)", None, 0, remix=False),
    LoopAction("zoom_15", "Zoom Out 1.5×", "🔍", 1, remix=True),
    LoopAction("zoom_2", "Zoom Out 2×", "🔍", 1, remix=True),
    LoopAction("zoom_custom", "Custom Zoom", "🔍", 1, remix=True),  # always asks: its factor is typed
    LoopAction("square", "Make Square", "↔️", 1, remix=False),
    LoopAction("pan_left", "", "⬅️", 2, remix=True),
    LoopAction("pan_right", "", "➡️", 2, remix=True),
    LoopAction("pan_up", "", "⬆️", 2, remix=True),
    LoopAction("pan_down", "", "⬇️", 2, remix=True),
)
LOOP = {action.name: action for action in LOOP_ACTIONS}
LOOP_TITLES = {
    "vary_subtle": "Vary (Subtle)",
    "vary_strong": "Vary (Strong)",
    "upscale_subtle": "Upscale (Subtle)",
    "upscale_creative": "Upscale (Creative)",
    "zoom_15": "Zoom Out 1.5×",
    "zoom_2": "Zoom Out 2×",
    "zoom_custom": "Custom Zoom",
    "square": "Make Square",
    "pan_left": "Pan ⬅️",
    "pan_right": "Pan ➡️",
    "pan_up": "Pan ⬆️",
    "pan_down": "Pan ⬇️",
}
LOOP_KINDS = frozenset({"imagine", "vary", "inpaint", "upscale", "creative_upscale"})
"""Kinds of job whose single image gets the editing loop's buttons."""


def loop_spec(
    registry: Registry,
    action: str,
    *,
    image: PILImage.Image,
    lineage: Lineage,
    prompt: str | None = None,
    factor: float | None = None,
    strength: float | None = None,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
) -> Inpaint | Vary | Upscale | CreativeUpscale:
    """The spec of loop action `action` on `image`. `prompt` (and `strength` for a variation) come from a remix
    modal; `factor` from Custom Zoom's. Raises ValueError naming the problem."""
    if action not in LOOP and action != "vary":
        raise ValueError(f"unknown action {action!r}")
    common = {"image": image, "lineage": lineage, "tiny": tiny, "image_key": image_key}
    if action == "vary":  # a grid's V, remixed: the source's image count, the modal's prompt and strength
        how = DEFAULT_VARIATION_STRENGTH if strength is None else strength
        count = lineage.count
        return variation_spec(
            registry, strength=how, prompt=prompt, count=count, random_seed=random_seed, **common
        )
    if action.startswith("vary_"):
        how: str | float = action.removeprefix("vary_") if strength is None else strength
        return variation_spec(registry, strength=how, prompt=prompt, random_seed=random_seed, **common)
    if action == "upscale_subtle":
        return subtle_upscale_spec(registry, **common)
    if action == "upscale_creative":
        return creative_upscale_spec(registry, random_seed=random_seed, **common)
    if action.startswith("zoom_"):
        fixed = {"zoom_15": 1.5, "zoom_2": 2.0}
        zoom = fixed.get(action, factor)
        if zoom is None:
            raise ValueError("Custom Zoom needs a factor, e.g. 1.5")
        extend = zoom_extend(image.size, zoom)
    elif action.startswith("pan_"):
        extend = pan_extend(image.size, action.removeprefix("pan_"))
    else:
        extend = square_extend(image.size)
    return outpaint_spec(
        registry,
        image=image,
        extend=extend,
        lineage=lineage,
        prompt=prompt,
        tiny=tiny,
        random_seed=random_seed,
        image_key=image_key,
    )


REMIX_TITLES = {**LOOP_TITLES, "reroll": "Reroll", "vary": "Variations"}  # what a remix modal is for


def reroll_spec(kind_spec: type[BaseModel], spec: dict, *, prompt: str | None, random_seed: int) -> BaseModel:
    """The same request with a new seed, and with `prompt` when a remix changed it; checked like any spec
    (an empty prompt for a text-to-image job is refused)."""
    changes: dict = {"seed": random_seed}
    if prompt is not None:
        changes["prompt"] = prompt.strip()
    try:
        return kind_spec.model_validate({**spec, **changes})
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ValueError(f"the {problem['loc'][0]} is not valid: {problem['msg'].lower()}") from None


def parse_strength(text: str) -> float:
    """A variation strength typed in a remix modal ("0.5")."""
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        raise ValueError(
            f"the strength must be a number above 0 and at most 1 (got {text.strip()[:20]!r})"
        ) from None
    if not 0 < value <= 1:
        raise ValueError(f"the strength must be above 0 and at most 1 (got {value:g})")
    return value
