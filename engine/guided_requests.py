"""What a guided generation is (ControlNet conditions, IP-Adapter references, hires fix), and the checks that
run before anything is queued. Kept free of torch, like `engine.generate`, so front-ends can import it.

Decisions, written down here because users see them:
- Conditions: `canny` is computed from the input image with OpenCV (thresholds 100/200, as ControlNet's
  reference annotator); `depth` by the depth annotator preset (DPT); `openpose` has no annotator here (no pose
  model can be built offline from transformers alone), so it needs the pose image itself (`given`).
- Hires fix: the first pass runs at the first size (the model's native size, or the size asked for), the
  pixels are upscaled with Lanczos to the final size, and a second image-to-image pass at `strength`
  re-denoises them. A request larger than the model's native resolution at its aspect ratio gets it by
  default, plain `/imagine` too (`hires_plan`); `--hires 1` turns it off. The ControlNet and the references
  guide the first pass, which sets the composition; the second pass only refines.
- References: one IP-Adapter per family; every reference image is one image prompt of the adapter, at its
  own weight (diffusers' per-adapter scale applies to all; the weights are averaged by image embedding).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.generate import Hires, TextToImage, check_hires_pass, check_request
from engine.registry import MIN_SIDE

if TYPE_CHECKING:
    from PIL import Image

    from engine.registry import Preset, Registry

CONTROL_KINDS = ("canny", "depth", "openpose")
COMPUTED_CONTROLS = ("canny", "depth")  # conditions the worker computes from an input image
MAX_CONTROL_WEIGHT = 2.0
MAX_REFERENCE_WEIGHT = 2.0
DEFAULT_CONTROL_WEIGHT = 1.0
DEFAULT_REFERENCE_WEIGHT = 1.0
MIN_BLEND_IMAGES = 2
MAX_BLEND_IMAGES = 5
MAX_REFERENCES = 5
HIRES_OFF = 1.0  # `--hires 1`: no hires fix, generate directly at the size asked for
MAX_HIRES = 2.0
CANNY_THRESHOLDS = (100, 200)

ReferenceRole = Literal["style", "content", "blend"]


@dataclass(frozen=True)
class Control:
    """A ControlNet condition: `image` is the input it is computed from, or the condition itself (`given`)."""

    kind: str
    image: Image.Image
    weight: float = DEFAULT_CONTROL_WEIGHT
    given: bool = False


@dataclass(frozen=True)
class Reference:
    """An image prompt for the IP-Adapter: a style or content reference, or one image of a blend."""

    image: Image.Image
    role: ReferenceRole
    weight: float = DEFAULT_REFERENCE_WEIGHT


@dataclass(frozen=True)
class GuidedRequest:
    """A text-to-image request (its size is the final size) with any of a condition, references, hires fix."""

    base: TextToImage
    control: Control | None = None
    controlnet: Preset | None = None
    annotator: Preset | None = None
    references: tuple[Reference, ...] = ()
    adapter: Preset | None = None
    hires: Hires | None = None


def pixel_sha256(image: Image.Image) -> str:
    """A digest of an image's RGB pixels (not of a file's bytes), to record which inputs and condition a job
    used. Here, free of torch, so front-ends can record references."""
    import numpy as np

    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def controlnet_for(registry: Registry, model: Preset, kind: str) -> Preset:
    """The ControlNet preset for `kind` on `model`'s family (a tiny one for a tiny model); ValueError naming
    the conditions the model does have when there is none."""
    check_control_kind(kind)
    found = [p for p in _of_role(registry, "controlnet", model) if p.control == kind]
    if not found:
        have = sorted({p.control for p in _of_role(registry, "controlnet", model) if p.control})
        raise ValueError(
            f"{model.name} has no ControlNet for {kind}"
            + (f"; it has: {', '.join(have)}" if have else "; it takes no control image")
        )
    return found[0]


def annotator_for(registry: Registry, kind: str, *, tiny: bool) -> Preset | None:
    """The annotator that computes `kind` from an image (None for canny, computed with OpenCV); ValueError for a
    condition that must be given."""
    if kind == "canny":
        return None
    if kind not in COMPUTED_CONTROLS:
        raise ValueError(
            f"{kind} cannot be computed from a photo here: give the {kind} image itself with control_image"
        )
    found = [
        registry.get(n)
        for n in registry.names("annotator")
        if registry.get(n).control == kind and registry.get(n).is_tiny == tiny
    ]
    if not found:
        raise ValueError(f"no annotator computes {kind}: give the {kind} image itself with control_image")
    return found[0]


def adapter_for(registry: Registry, model: Preset) -> Preset:
    """The IP-Adapter preset for `model`'s family; ValueError when the model takes no image prompts."""
    found = _of_role(registry, "ip-adapter", model)
    if not found:
        raise ValueError(f"{model.name} takes no reference images (no IP-Adapter for {model.family})")
    return found[0]


def native_size(model: Preset, width: float, height: float) -> tuple[int, int]:
    """The model's native resolution at the aspect ratio `width`:`height`: its default pixel count, each side a
    multiple of its step (8, or 16 for Flux), scaled up where needed so the short side is at least the minimum
    (so on a model whose native side is the minimum, a long image is natively longer)."""
    area = model.default_width * model.default_height
    high = math.sqrt(area * height / width)
    wide = high * width / height
    scale = max(1.0, MIN_SIDE / min(wide, high))
    step = model.multiple_of
    return round(wide * scale / step) * step, round(high * scale / step) * step


def hires_plan(model: Preset, width: int, height: int, scale: float | None) -> tuple[int, int, Hires | None]:
    """The final size and the hires pass for a request of `width`x`height`.

    With `scale` above 1, the first pass runs at the size asked for and the result is `scale` times larger;
    `scale` 1 (`HIRES_OFF`) generates directly at the size asked for. Without it, hires fix is the default for a
    size above the model's native resolution at that aspect ratio (more pixels than `native_size`): the first
    pass at the native size, the second at the size asked for. Sides are rounded to the model's multiple."""
    step = model.multiple_of
    if scale is not None:
        check_hires(scale)
        if scale == HIRES_OFF:
            return width, height, None
        final = (_round(width * scale, step), _round(height * scale, step))
        return *final, Hires(width, height)
    first = native_size(model, width, height)
    if width * height <= first[0] * first[1]:
        return width, height, None
    return width, height, Hires(*first)


def scales_hires(hires: object) -> bool:
    """Whether a `--hires` value asks for the hires fix at a scale (guided generation's `--hires 1.5`), rather
    than leaving the default (None) or turning it off (1): a plain /imagine stays plain with `--hires 1`."""
    return hires is not None and hires != HIRES_OFF


def check_control_kind(kind: str) -> None:
    if kind not in CONTROL_KINDS:
        raise ValueError(f"control must be one of {', '.join(CONTROL_KINDS)} (got {kind!r})")


def check_weight(what: str, weight: float, maximum: float) -> None:
    if not (math.isfinite(weight) and 0 <= weight <= maximum):
        raise ValueError(f"{what} must be between 0 and {maximum:g} (got {weight:g})")


def check_hires(scale: float) -> None:
    if not (math.isfinite(scale) and HIRES_OFF <= scale <= MAX_HIRES):
        raise ValueError(
            f"hires must be 1 (off: generate directly at the size asked for) up to {MAX_HIRES:g} (got {scale:g})"
        )


def check_references(references: tuple[Reference, ...]) -> None:
    blend = [r for r in references if r.role == "blend"]
    if blend and not MIN_BLEND_IMAGES <= len(blend) <= MAX_BLEND_IMAGES:
        raise ValueError(f"a blend takes {MIN_BLEND_IMAGES} to {MAX_BLEND_IMAGES} images (got {len(blend)})")
    if len(references) > MAX_REFERENCES:
        raise ValueError(f"at most {MAX_REFERENCES} reference images (got {len(references)})")
    for reference in references:
        check_weight(f"the {reference.role} reference weight", reference.weight, MAX_REFERENCE_WEIGHT)


def check_guided(preset: Preset, request: GuidedRequest) -> None:
    """Raise ValueError naming the first problem; run before any model is loaded."""
    check_request(preset, request.base)
    if request.control is not None:
        check_control_kind(request.control.kind)
        check_weight("control weight", request.control.weight, MAX_CONTROL_WEIGHT)
        if request.controlnet is None or request.controlnet.family != preset.family:
            raise ValueError(f"{preset.name} needs a {preset.family} ControlNet for {request.control.kind}")
        if not request.control.given and request.control.kind not in COMPUTED_CONTROLS:
            raise ValueError(f"{request.control.kind} must be given as the condition image itself")
        if request.control.kind == "depth" and not request.control.given and request.annotator is None:
            raise ValueError("depth needs a depth annotator to compute it")
    check_references(request.references)
    if request.references and (request.adapter is None or request.adapter.family != preset.family):
        raise ValueError(f"{preset.name} needs a {preset.family} IP-Adapter for reference images")
    if request.hires is not None:
        check_hires_pass(preset, request.hires, steps=request.base.steps, count=request.base.count)


def _of_role(registry: Registry, role: str, model: Preset) -> list[Preset]:
    presets = [registry.get(name) for name in registry.names(role)]
    return [p for p in presets if p.family == model.family and p.is_tiny == model.is_tiny]


def _round(value: float, step: int) -> int:
    return max(step, round(value / step) * step)
