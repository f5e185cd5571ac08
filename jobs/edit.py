"""Job functions for editing stored images: `inpaint` (insertion, removal, outpaint) and `vary`.

Each reads its inputs back from the blob store by the keys its spec carries and runs the engine on the GPU
thread; `run_job` does everything else, as for `imagine`.
"""

from __future__ import annotations

from engine.edit_requests import InpaintRequest, VariationRequest
from jobs.inputs import load_input
from jobs.lifecycle import Produced, Progress, generated, on_gpu, run_job
from jobs.services import WorkerServices
from jobs.specs import Inpaint, Vary
from storage.models import Job


async def inpaint(ctx: dict, job_id: str) -> dict:
    """Inpainting in the spec's mode; image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _inpaint)


async def vary(ctx: dict, job_id: str) -> dict:
    """Variations of a stored image on a text-to-image model; image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _vary)


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
    images = await on_gpu(services, edit.vary, services.engine.cache, preset, request, progress)
    return await generated(services, preset, images, spec.seed)
