"""Request specs: what a front-end asks a worker to do, validated before anything is enqueued.

A spec is plain data (pydantic), stored on the job record and read back by the worker. Builders such as
`imagine_spec` fill defaults from the model preset and check its limits, so a bad request fails with a message
that names the limit while the user is still there to read it, and nothing is enqueued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from engine.canvas import Extend
from engine.edit_requests import (
    DEFAULT_VARIATION_STRENGTH,
    MODES,
    InpaintRequest,
    VariationRequest,
    check_inpaint,
    check_variation,
)
from engine.enhance_presets import DEFAULT_FIDELITY, face_restorer_for, upscale_factor, upscaler_for
from engine.generate import Hires, TextToImage
from engine.guided_requests import HIRES_OFF, hires_plan, native_size
from engine.lora import LoraLibrary, check_loras
from engine.registry import Preset, Registry
from jobs.prompt_params import check_chaos, check_tile, stylize_guidance
from jobs.styles import Style, find_style
from jobs.text import check_name, check_text, shown

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1

PromptText = Annotated[str, AfterValidator(lambda text: check_text("prompt", text))]
"""A prompt or negative prompt: no control character but newline and tab (`jobs.text`), checked again on every
spec, so a builder that forgets cannot store a NUL."""
NameText = Annotated[str, AfterValidator(lambda text: check_name("name", text))]


class Imagine(BaseModel):
    """Text-to-image: `count` images, image i seeded with `seed + i`."""

    kind: Literal["imagine"] = "imagine"
    prompt: PromptText = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int = Field(ge=0, le=MAX_SEED)
    count: int
    loras: list[tuple[str, float]] = Field(default_factory=list)  # (name, weight), applied in this order
    enhance_faces: bool = False  # restore faces after generation with the default face restorer
    tile: bool = False  # seamless tiling (`jobs.prompt_params`)
    chaos: int = Field(0, ge=0, le=100)  # variety between the images (`jobs.prompt_params`)
    style: str | None = None  # the style the prompt was expanded with (`jobs.styles`), for the record
    hires: float | None = None  # as asked: None the default (`hires_plan`), 1 off
    first_width: int | None = (
        None  # hires fix's first pass (both or neither); None: directly at width x height
    )
    first_height: int | None = None

    def request(self) -> TextToImage:
        """What the engine is asked for (the face restoration step is the job's, not the engine call's)."""
        return TextToImage(
            prompt=self.prompt,
            negative=self.negative,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=self.guidance,
            seed=self.seed,
            count=self.count,
            loras=tuple((name, weight) for name, weight in self.loras),
            tile=self.tile,
            hires=None if self.first_width is None else Hires(self.first_width, self.first_height or 0),
        )


class ReplyTarget(BaseModel):
    """Where results go: the platform picks the worker-side replier, `data` is that replier's address book
    (channel, thread, interaction token, …). The CLI's target has no data: it follows the job's event stream."""

    platform: str
    data: dict = Field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    """`"768x512"` → (768, 512)."""
    parts = [part.strip() for part in text.lower().split("x")]
    # ASCII digits only ("²".isdigit() holds, int() refuses it), and few enough that int() takes them
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT, e.g. 768x512 (got {shown(text)})")
    return int(parts[0]), int(parts[1])


def size_for_aspect(preset: Preset, aspect: str) -> tuple[int, int]:
    """The preset's native resolution at the aspect ratio `"W:H"` (`engine.guided_requests.native_size`): its
    default pixel count, each side a multiple of its step, the short side at least the minimum."""
    parts = aspect.split(":")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"aspect ratio must look like W:H, e.g. 16:9 (got {shown(aspect)})") from None
    if len(parts) != 2 or w <= 0 or h <= 0 or max(w / h, h / w) > 4:
        raise ValueError(f"aspect ratio must be W:H with both positive and at most 4:1 (got {shown(aspect)})")
    return native_size(preset, w, h)


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
    loras: Sequence[tuple[str, float]] = (),
    lora_library: LoraLibrary | None = None,
    enhance_faces: bool = False,
    style: str | None = None,
    styles: Mapping[str, Style] | None = None,
    tile: bool = False,
    chaos: int = 0,
    stylize: int | None = None,
    hires: float | None = None,
) -> Imagine:
    """Build and check an `Imagine` spec. Raises ValueError (UnknownModelError for a model, UnknownLoraError
    listing the known LoRAs for a LoRA) naming the limit.

    `random_seed` is used when `seed` is None; the caller draws it, so this function stays deterministic.
    `loras` are (name, weight) pairs looked up in `lora_library`; without a library, LoRAs are refused.
    `style` (looked up in `styles`, a server's own, and the built-in ones), `tile`, `chaos` and `stylize` are
    the prompt parameters of `jobs.prompt_params`; the style's expansion is the spec's prompt.
    A size above the model's native resolution is made through the hires fix unless `hires` is 1
    (`engine.guided_requests.hires_plan`); a scale (`--hires 1.5`) is guided generation's (`jobs.guided`), so
    one spec never stands for the size asked for in one place and for that size scaled in another.
    """
    _check_texts(prompt, negative)
    prompt = prompt.strip()
    if not prompt:
        raise ValueError("the prompt is empty: describe the image you want")
    if style is not None:
        prompt, negative = find_style(style, styles).apply(prompt, negative)
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
    if stylize is not None:
        if guidance is not None:
            raise ValueError("give --stylize or --guidance, not both: --stylize sets the guidance")
        guidance = stylize_guidance(stylize, preset.default_guidance, preset.name)
    check_chaos(chaos, preset.default_guidance, preset.name)
    check_tile(tile, preset.family, preset.name)
    guidance = preset.default_guidance if guidance is None else guidance
    preset.check(width=width, height=height, steps=steps, count=count, guidance=guidance, negative=negative)
    if hires is not None and hires != HIRES_OFF:  # a scale is guided generation's (`jobs.guided`)
        raise ValueError(
            f"hires takes only 1 here, to generate directly at the size asked for (got {hires:g}); for a larger "
            "image ask for its size: above the model's native size it is made through the hires fix"
        )
    width, height, plan = hires_plan(preset, width, height, hires)
    if loras and lora_library is None:
        raise ValueError("LoRAs are not available here: remove --lora")
    check_loras(loras, lora_library)
    if enhance_faces:
        registry.resolve(None, role="face", tiny=tiny)  # a face restorer must exist before anything runs
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
        loras=[(name, float(weight)) for name, weight in loras],
        enhance_faces=enhance_faces,
        tile=tile,
        chaos=chaos,
        style=None if style is None else style.strip().lower(),
        hires=hires,
        first_width=None if plan is None else plan.width,
        first_height=None if plan is None else plan.height,
    )


class Inpaint(BaseModel):
    """Inpainting: repaint the mask's white area (insertion, removal) or extend the canvas (outpaint).

    `image` and `mask` are blob keys of the stored inputs (`jobs.inputs.store_input`); image i is seeded
    `seed + i`."""

    kind: Literal["inpaint"] = "inpaint"
    mode: Literal["insertion", "removal", "outpaint"]
    image: str
    mask: str | None = None
    prompt: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    negative: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    extend: Extend = Field(default_factory=Extend)
    model: str
    steps: int
    guidance: float
    seed: int = Field(ge=0, le=MAX_SEED)
    count: int
    parent: str | None = None  # the job whose image this edits (zoom, pan, make square: `jobs.editing`)


class Vary(BaseModel):
    """Variations (image-to-image) of a stored image on a text-to-image model: `image` noised by `strength`
    and denoised again; image i is seeded `seed + i`."""

    kind: Literal["vary"] = "vary"
    image: str
    prompt: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    negative: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    strength: float = Field(gt=0, le=1)
    model: str
    steps: int
    guidance: float
    seed: int = Field(ge=0, le=MAX_SEED)
    count: int
    loras: list[tuple[str, float]] = Field(default_factory=list)  # the source job's, applied in this order
    parent: str | None = None  # the job whose image this varies (`jobs.editing`)


EXTEND_SIDES = ("left", "right", "top", "bottom")


def parse_extend(text: str) -> Extend:
    """`"left=256,top=64"` → Extend(left=256, top=64); sides left out extend by 0."""
    amounts: dict[str, int] = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        side, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or side.lower() not in EXTEND_SIDES:
            raise ValueError(f"extend must look like left=256,right=0,top=0,bottom=0 (got {shown(text)})")
        if side.lower() in amounts:
            raise ValueError(f"extend gives {side.lower()} twice (in {shown(text)})")
        if not value.isascii() or not value.isdigit() or len(value) > 6:
            raise ValueError(
                f"extend {side.lower()} must be a whole number of pixels, 0 or more (got {shown(value)})"
            )
        amounts[side.lower()] = int(value)
    return Extend(**amounts)


def inpaint_spec(
    registry: Registry,
    *,
    mode: str,
    image: PILImage.Image,
    mask: PILImage.Image | None = None,
    prompt: str = "",
    negative: str = "",
    extend: Extend | None = None,
    model: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    count: int | None = None,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
    mask_key: str | None = None,
) -> Inpaint:
    """Build and check an `Inpaint` spec from the decoded image and mask (`jobs.inputs.read_image`), with the
    engine's own checks. Raises ValueError naming the problem.

    Validation needs the pixels, not the blob keys: a caller that stores the inputs only once they pass (the
    CLI) fills `image` and `mask` in afterwards with `model_copy`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    _check_texts(prompt, negative)
    _check_seed(seed)
    preset = registry.resolve(model, role="inpaint", tiny=tiny)
    request = InpaintRequest(
        mode=mode,  # type: ignore[arg-type]  # checked against MODES above
        image=image,
        mask=mask,
        prompt=prompt.strip(),
        negative=negative.strip(),
        steps=preset.default_steps if steps is None else steps,
        guidance=preset.default_guidance if guidance is None else guidance,
        seed=random_seed if seed is None else seed,
        count=1 if count is None else count,
        extend=Extend() if extend is None else extend,
    )
    check_inpaint(preset, request)
    return Inpaint(
        mode=request.mode,
        image=image_key,
        mask=mask_key,
        prompt=request.prompt,
        negative=request.negative,
        extend=request.extend,
        model=preset.name,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
        count=request.count,
    )


def vary_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    prompt: str = "",
    negative: str = "",
    strength: float = DEFAULT_VARIATION_STRENGTH,
    model: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    count: int | None = None,
    tiny: bool = False,
    random_seed: int = 0,
    image_key: str = "",
) -> Vary:
    """Build and check a `Vary` spec from the decoded image, with the engine's own checks (see `inpaint_spec`
    for the blob key). Raises ValueError naming the problem."""
    _check_texts(prompt, negative)
    _check_seed(seed)
    preset = registry.resolve(model, role="txt2img", tiny=tiny)
    request = VariationRequest(
        image=image,
        prompt=prompt.strip(),
        negative=negative.strip(),
        strength=strength,
        steps=preset.default_steps if steps is None else steps,
        guidance=preset.default_guidance if guidance is None else guidance,
        seed=random_seed if seed is None else seed,
        count=1 if count is None else count,
    )
    check_variation(preset, request)
    return Vary(
        image=image_key,
        prompt=request.prompt,
        negative=request.negative,
        strength=request.strength,
        model=preset.name,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
        count=request.count,
    )


def _check_texts(prompt: str, negative: str) -> None:
    """Length, and no control character but newline and tab (`jobs.text`: refused, not stripped), so nothing
    with a NUL reaches PostgreSQL."""
    for what, text in (("prompt", prompt), ("negative prompt", negative)):
        check_text(what, text)
        if len(text.strip()) > MAX_PROMPT_CHARS:
            raise ValueError(f"the {what} is {len(text.strip())} characters; the limit is {MAX_PROMPT_CHARS}")


def _check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED} (got {seed})")


class Upscale(BaseModel):
    """Upscaling: the stored image `image` (blob key) enlarged `scale` times by the upscale preset `model`."""

    kind: Literal["upscale"] = "upscale"
    image: str
    width: int = Field(ge=1)  # the input's size, as checked against the preset's limits
    height: int = Field(ge=1)
    model: str
    scale: int = Field(ge=1)
    parent: str | None = None  # the job whose image this upscales


class CreativeUpscale(BaseModel):
    """Upscale (Creative): the stored image enlarged by the upscaler `upscaler`, then reworked at the larger
    size by the text-to-image `model` at a low `strength`, tile by tile, so detail is added, not only
    interpolated (`jobs.editing.creative_upscale_spec`)."""

    kind: Literal["creative_upscale"] = "creative_upscale"
    image: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    upscaler: str
    scale: int = Field(ge=1)
    model: str
    prompt: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    negative: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    strength: float = Field(gt=0, le=1)
    steps: int
    guidance: float
    seed: int = Field(ge=0, le=MAX_SEED)
    loras: list[tuple[str, float]] = Field(default_factory=list)
    parent: str | None = None


class Enhance(BaseModel):
    """Face restoration of the stored image `image` with the face preset `model`, after upscaling it `scale`
    times with `upscaler` when one is given. An image without a face comes back unchanged ("no face found")."""

    kind: Literal["enhance"] = "enhance"
    image: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    model: str
    fidelity: float = Field(DEFAULT_FIDELITY, ge=0, le=1)  # CodeFormer's; other restorers have none
    upscaler: str | None = None
    scale: int = Field(1, ge=1)
    parent: str | None = None  # the job whose image this enhances


def upscale_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    scale: int | None = None,
    model: str | None = None,
    tiny: bool = False,
    image_key: str = "",
) -> Upscale:
    """Build and check an `Upscale` spec from the decoded image (`scale` 2 or 4, default the default model's);
    the image must fit the upscaler's input limits. See `inpaint_spec` for the blob key."""
    preset = upscaler_for(registry, scale=scale, model=model, tiny=tiny)
    _check_input_size(preset, image)
    width, height = image.size
    return Upscale(
        image=image_key, width=width, height=height, model=preset.name, scale=upscale_factor(preset)
    )


def enhance_spec(
    registry: Registry,
    *,
    image: PILImage.Image,
    model: str | None = None,
    fidelity: float | None = None,
    upscale: int | None = None,
    tiny: bool = False,
    image_key: str = "",
) -> Enhance:
    """Build and check an `Enhance` spec from the decoded image: the face restorer `model` (default: the
    registry's), its `fidelity` (CodeFormer only), and an optional upscale factor applied first."""
    preset = face_restorer_for(registry, model=model, fidelity=fidelity, tiny=tiny)
    _check_input_size(preset, image)
    upscaler = None
    if upscale is not None:
        upscaler = upscaler_for(registry, scale=upscale, model=None, tiny=tiny)
        _check_input_size(upscaler, image)
    width, height = image.size
    return Enhance(
        image=image_key,
        width=width,
        height=height,
        model=preset.name,
        fidelity=DEFAULT_FIDELITY if fidelity is None else fidelity,
        upscaler=None if upscaler is None else upscaler.name,
        scale=1 if upscaler is None else upscale_factor(upscaler),
    )


def _check_input_size(preset: Preset, image: PILImage.Image) -> None:
    width, height = image.size
    try:
        preset.check(width=width, height=height, steps=preset.default_steps, count=1)
    except ValueError as exc:
        raise ValueError(f"the image is {width}x{height}: {exc}") from None


class TrainLora(BaseModel):
    """LoRA training: the dataset zip `dataset` (blob key) trained on the txt2img preset `model` into the
    tenant's LoRA record `lora_id` (named `name`, triggered by `trigger`). Sample images are the job's images."""

    kind: Literal["train_lora"] = "train_lora"
    lora_id: int
    name: NameText
    trigger: NameText = Field(min_length=1, max_length=100)
    dataset: str
    model: str
    family: str
    steps: int = Field(ge=1, le=100_000)
    rank: int = Field(ge=1, le=256)
    alpha: float = Field(gt=0)
    learning_rate: float = Field(gt=0, le=1)
    batch_size: int = Field(ge=1, le=64)
    resolution: int = Field(ge=64)
    checkpoint_every: int = Field(ge=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    count: int = Field(2, ge=0, le=8)  # sample images, made with the LoRA at the end
    sample_steps: int = Field(ge=1)
