"""Job functions, one per kind of job: each says how to make its images from its spec; `run_job` does the rest.

To add a kind: a spec in `jobs.specs`, a function here that calls `run_job` with its producer, and an entry in
`jobs.worker.WorkerSettings.functions`.
"""

from __future__ import annotations

from dataclasses import replace

from jobs import relax
from jobs.enhance import restore_generated_faces
from jobs.lifecycle import Produced, Progress, generated, run_job
from jobs.prompt_params import image_guidance
from jobs.services import WorkerServices
from jobs.specs import Imagine
from jobs.tenant_loras import check_tenant_loras
from storage.models import Job


async def imagine(ctx: dict, job_id: str) -> dict:
    """Text-to-image: `count` images, image i seeded with `seed + i`."""
    return await run_job(ctx, job_id, _imagine)


async def _imagine(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    await check_tenant_loras(job)  # every job, the file cached or not: another tenant's LoRA is unknown here
    spec = Imagine.model_validate(job.spec)
    preset = services.registry.get(spec.model)
    request = spec.request()
    if job.attempts > 1 and not (spec.chaos and spec.count > 1):
        # a pre-empted relax job goes on from its latents (jobs.relax); a first run never was
        request = replace(request, resume=(await relax.load(services.redis, job.id)).resume)
    # The batcher runs it on the GPU thread, alone or with waiting compatible requests (jobs.batching).
    if spec.chaos and spec.count > 1:
        images = []
        for index in range(spec.count):  # each image its own guidance (jobs.prompt_params), so one at a time
            seed = spec.seed + index
            guidance = image_guidance(spec.guidance, spec.chaos, seed, index)
            one = replace(request, seed=seed, count=1, guidance=guidance)
            images += await services.batcher.txt2img(preset, one, progress)
    else:
        images = await services.batcher.txt2img(preset, request, progress)
    if spec.enhance_faces:
        images = await restore_generated_faces(services, job, preset, images)
    return await generated(services, preset, images, spec.seed)
