"""Guided generation as a job: the `Guided` spec (a text-to-image request with a ControlNet condition, IP-Adapter
references and the hires fix), its builder, and the `guided` job function.

The spec carries blob keys of the stored input images (`jobs.inputs.store_input`) and a SHA-256 of each
reference's pixels, so a job's references are on its record. When the job runs, the worker adds what the engine
really did under `observed`: the pipeline class, the condition image as the pipeline held it (stored as a blob,
with its pixel digest) and each pass's size and steps. Guided jobs never share a pipeline call with other jobs:
their kind has its own job function and does not go through the text-to-image batcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from engine.guided_requests import (
    DEFAULT_CONTROL_WEIGHT,
    MAX_CONTROL_WEIGHT,
    Control,
    GuidedRequest,
    Hires,
    Reference,
    adapter_for,
    annotator_for,
    check_guided,
    check_weight,
    controlnet_for,
    hires_plan,
)
from engine.registry import Registry
from jobs.inputs import load_input, store_input
from jobs.lifecycle import Produced, Progress, generated, on_gpu, run_job
from jobs.services import WorkerServices
from jobs.specs import MAX_PROMPT_CHARS, PromptText, imagine_spec
from storage.models import Job
from storage.retention import record_job_inputs

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from storage.blobs import BlobStore


class GuidedReference(BaseModel):
    image: str  # blob key
    role: Literal["style", "content", "blend"]
    weight: float = Field(ge=0, le=2)
    sha256: str = ""  # of the image's RGB pixels (engine.guided.pixel_sha256)


class Guided(BaseModel):
    """Text-to-image with guidance: image i seeded with `seed + i`, `width`x`height` the final size."""

    kind: Literal["guided"] = "guided"
    prompt: PromptText = Field("", max_length=MAX_PROMPT_CHARS)  # a blend may have none
    negative: PromptText = Field("", max_length=MAX_PROMPT_CHARS)
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int = Field(ge=0)
    count: int
    control: Literal["canny", "depth", "openpose"] | None = None
    control_image: str | None = None  # blob key: the input the condition is computed from, or the condition
    control_given: bool = False
    control_weight: float = Field(DEFAULT_CONTROL_WEIGHT, ge=0, le=MAX_CONTROL_WEIGHT)
    controlnet: str | None = None
    annotator: str | None = None
    references: list[GuidedReference] = Field(default_factory=list)
    adapter: str | None = None
    hires: float | None = None  # the scale asked for; None with first_width set: the default above native
    first_width: int | None = None
    first_height: int | None = None
    observed: dict | None = None  # written by the worker: what the pipelines were really given


def guided_spec(
    registry: Registry,
    *,
    prompt: str = "",
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
    control: str | None = None,
    control_image: PILImage.Image | None = None,
    control_given: bool = False,
    control_weight: float = DEFAULT_CONTROL_WEIGHT,
    references: Sequence[tuple[PILImage.Image, str, float]] = (),
    hires: float | None = None,
) -> Guided:
    """Build and check a `Guided` spec from the decoded input images; ValueError names the first problem. The
    blob keys are filled in by `store_guided_inputs` once the spec passes."""
    blend = bool(references) and all(role == "blend" for _, role, _ in references)
    if not prompt.strip() and not blend:
        raise ValueError("the prompt is empty: describe the image you want")
    base = imagine_spec(
        registry,
        prompt=prompt if prompt.strip() else "blend",  # a blend's prompt is optional
        negative=negative,
        model=model,
        size=size,
        aspect=aspect,
        steps=steps,
        guidance=guidance,
        seed=seed,
        count=count,
        tiny=tiny,
        random_seed=random_seed,
    )
    preset = registry.get(base.model)
    width, height, plan = hires_plan(preset, base.width, base.height, hires)
    preset.check(width=width, height=height, steps=base.steps, count=base.count, guidance=base.guidance)
    spec = Guided(
        **base.model_dump(include={"negative", "model", "steps", "guidance", "seed", "count"}),
        prompt=base.prompt if prompt.strip() else "",
        width=width,
        height=height,
        hires=hires,
        first_width=None if plan is None else plan.width,
        first_height=None if plan is None else plan.height,
    )
    if control is not None:
        check_weight("control weight", control_weight, MAX_CONTROL_WEIGHT)
        controlnet = controlnet_for(registry, preset, control)
        if control_image is None:
            raise ValueError(f"--control {control} needs an image to follow")
        annotator = None if control_given else annotator_for(registry, control, tiny=preset.is_tiny)
        spec = spec.model_copy(
            update={
                "control": control,
                "control_given": control_given,
                "control_weight": control_weight,
                "controlnet": controlnet.name,
                "annotator": None if annotator is None else annotator.name,
            }
        )
    elif control_image is not None:
        raise ValueError("a control image needs a control type: canny, depth or openpose")
    if references:
        spec = spec.model_copy(update={"adapter": adapter_for(registry, preset).name})
    check_guided(
        preset,
        request_for(
            registry,
            spec,
            control_image,
            [img for img, _, _ in references],
            [(role, weight) for _, role, weight in references],
        ),
    )
    return spec


async def store_guided_inputs(
    blobs: BlobStore,
    spec: Guided,
    control_image: PILImage.Image | None,
    references: Sequence[tuple[PILImage.Image, str, float]],
) -> Guided:
    """`spec` with its input images stored and their keys (and the references' pixel digests) filled in."""
    from engine.guided_requests import pixel_sha256

    update: dict = {}
    if control_image is not None:
        update["control_image"] = await store_input(blobs, control_image)
    update["references"] = [
        GuidedReference(
            image=await store_input(blobs, image), role=role, weight=weight, sha256=pixel_sha256(image)
        )
        for image, role, weight in references
    ]
    return spec.model_copy(update=update)


def request_for(
    registry: Registry,
    spec: Guided,
    control_image: PILImage.Image | None,
    reference_images: Sequence[PILImage.Image],
    roles: Sequence[tuple[str, float]] | None = None,
) -> GuidedRequest:
    """The engine's request for `spec`, with its input images already decoded."""
    from engine.generate import TextToImage

    roles = [(r.role, r.weight) for r in spec.references] if roles is None else roles
    base = TextToImage(
        prompt=spec.prompt,
        negative=spec.negative,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
        count=spec.count,
    )
    control = None
    if spec.control is not None and control_image is not None:
        control = Control(spec.control, control_image, spec.control_weight, spec.control_given)
    hires = None
    if spec.first_width is not None and spec.first_height is not None:
        hires = Hires(spec.first_width, spec.first_height)
    return GuidedRequest(
        base=base,
        control=control,
        controlnet=None if spec.controlnet is None else registry.get(spec.controlnet),
        annotator=None if spec.annotator is None else registry.get(spec.annotator),
        references=tuple(
            Reference(image, role, weight)  # type: ignore[arg-type]  # roles are checked by the spec
            for image, (role, weight) in zip(reference_images, roles, strict=True)
        ),
        adapter=None if spec.adapter is None else registry.get(spec.adapter),
        hires=hires,
    )


async def guided(ctx: dict, job_id: str) -> dict:
    """Guided text-to-image; image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _guided)


async def _guided(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    from engine import guided as engine_guided
    from engine.guided_requests import pixel_sha256

    spec = Guided.model_validate(job.spec)
    control = None if spec.control_image is None else await load_input(services.blobs, spec.control_image)
    images = [await load_input(services.blobs, reference.image) for reference in spec.references]
    request = request_for(services.registry, spec, control, images)
    preset = services.registry.get(spec.model)
    result = await on_gpu(services, engine_guided.guided, services.engine.cache, preset, request, progress)
    observed: dict = {"pipeline": result.pipeline, "passes": [list(p) for p in result.passes]}
    if result.condition is not None:
        observed["condition"] = await store_input(services.blobs, result.condition)
        observed["condition_sha256"] = pixel_sha256(result.condition)
    job.spec = {**job.spec, "observed": observed}
    await job.save(update_fields=["spec"])
    await record_job_inputs(job.id, job.spec)  # the condition image too falls under input retention
    return await generated(services, preset, result.images, spec.seed)
