"""Job functions for editing stored images: `inpaint` (insertion, removal, outpaint), `vary` and
`creative_upscale`.

Each reads its inputs back from the blob store by the keys its spec carries and runs the engine on the GPU
thread; `run_job` does everything else, as for `imagine`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from engine.edit_requests import InpaintRequest, VariationRequest
from engine.registry import Preset
from jobs.inputs import load_input
from jobs.lifecycle import Produced, Progress, generated, on_gpu, run_job
from jobs.services import WorkerServices
from jobs.specs import CreativeUpscale, Inpaint, Vary
from storage.models import Job

T = TypeVar("T")


async def inpaint(ctx: dict, job_id: str) -> dict:
    """Inpainting in the spec's mode; image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _inpaint)


async def vary(ctx: dict, job_id: str) -> dict:
    """Variations of a stored image on a text-to-image model; image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _vary)


async def creative_upscale(ctx: dict, job_id: str) -> dict:
    """Upscale (Creative): the upscaler, then a low-strength image-to-image pass in tiles (`engine.refine`)."""
    return await run_job(ctx, job_id, _creative_upscale)


async def _inpaint(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    from engine import edit  # torch and diffusers: imported where the GPU work runs, not by the queue's users

    spec = Inpaint.model_validate(job.spec)
    request = InpaintRequest(
        mode=spec.mode,
        image=await load_input(services.blobs, spec.image),
        mask=None if spec.mask is None else await load_input(services.blobs, spec.mask),
        prompt=spec.prompt,
        negative=spec.negative,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
        count=spec.count,
        extend=spec.extend,
    )
    preset = services.registry.get(spec.model)
    images = await on_gpu(services, edit.inpaint, services.engine.cache, preset, request, progress)
    return await generated(services, preset, images, spec.seed)


async def _vary(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    from engine import edit

    spec = Vary.model_validate(job.spec)
    request = VariationRequest(
        image=await load_input(services.blobs, spec.image),
        prompt=spec.prompt,
        negative=spec.negative,
        strength=spec.strength,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
        count=spec.count,
    )
    preset = services.registry.get(spec.model)
    run = partial(_with_loras, services, preset, spec.loras, edit.vary)
    images = await on_gpu(services, run, services.engine.cache, preset, request, progress)
    return await generated(services, preset, images, spec.seed)


async def _creative_upscale(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    from engine import refine
    from jobs.enhance import enhancer_for

    spec = CreativeUpscale.model_validate(job.spec)
    image = await load_input(services.blobs, spec.image)
    upscaled = await on_gpu(
        services, enhancer_for(services).upscale, services.registry.get(spec.upscaler), image
    )
    preset = services.registry.get(spec.model)
    refinement = refine.Refinement(
        prompt=spec.prompt,
        negative=spec.negative,
        strength=spec.strength,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
    )
    run = partial(_with_loras, services, preset, spec.loras, refine.refine)
    image = await on_gpu(services, run, services.engine.cache, preset, upscaled, refinement, progress)
    return await generated(services, preset, [image], spec.seed)


def _with_loras(
    services: WorkerServices,
    preset: Preset,
    loras: list[tuple[str, float]],
    function: Callable[..., T],
    *args: Any,
) -> T:
    """`function(*args)` on the GPU thread with the job's LoRAs applied to the resident pipeline (whose
    components the image-to-image pipeline shares) and removed after."""
    from engine.lora import applied_loras

    if not loras:
        return function(*args)
    library = services.engine.loras
    paths = [(name, library.path(name), weight) for name, weight in loras]
    with applied_loras(services.engine.cache.get(preset), paths, model=preset.name):
        return function(*args)
