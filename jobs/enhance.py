"""Job functions for upscaling and face restoration, and the face restoration `imagine --enhance-faces` runs.

The spandrel models live in one `Enhancer` per worker engine, so they stay resident between jobs as the
engine's pipelines do; it is only ever used from the worker's GPU thread. "No face found" is a result, not an
error: the image comes back unchanged and the job's event stream gets a `note` event saying so.
"""

from __future__ import annotations

import logging
import weakref
from functools import partial
from typing import TYPE_CHECKING

from PIL import Image

from engine.registry import Preset
from jobs import events
from jobs.inputs import load_input
from jobs.lifecycle import Produced, Progress, on_gpu, run_job
from jobs.services import WorkerServices
from jobs.specs import Enhance, Upscale
from storage.models import Job

if TYPE_CHECKING:  # spandrel takes seconds to import: only a worker that runs such a job pays for it
    from engine.enhancer import Enhancer
    from engine.faces import FaceRestoration

log = logging.getLogger(__name__)

NO_FACE_FOUND = "no face found"

# One enhancer per engine (a worker has one engine), created on first use; it goes when the engine goes.
_enhancers: weakref.WeakKeyDictionary[object, Enhancer] = weakref.WeakKeyDictionary()


def enhancer_for(services: WorkerServices) -> Enhancer:
    """The enhancer beside the worker's engine: same device, dtype and model cache folder."""
    from engine.enhancer import Enhancer

    engine = services.engine
    enhancer = _enhancers.get(engine)
    if enhancer is None:
        enhancer = Enhancer(engine.cache.cache_dir, device=engine.device, dtype=engine.dtype)
        _enhancers[engine] = enhancer
    return enhancer


async def upscale(ctx: dict, job_id: str) -> dict:
    """Upscale a stored image by the spec's factor (Real-ESRGAN, tiled)."""
    return await run_job(ctx, job_id, _upscale)


async def enhance(ctx: dict, job_id: str) -> dict:
    """Restore the faces in a stored image, upscaling it first when asked."""
    return await run_job(ctx, job_id, _enhance)


async def restore_generated_faces(
    services: WorkerServices, job: Job, generator: Preset, images: list[Image.Image]
) -> list[Image.Image]:
    """Faces restored in freshly generated images with the default face restorer (its tiny counterpart for a
    tiny generator); images without a face are kept as they are."""
    preset = services.registry.resolve(None, role="face", tiny=generator.is_tiny)
    restore = partial(enhancer_for(services).restore_faces, preset)
    results = [await on_gpu(services, restore, image) for image in images]
    await _note_faces(services, job, results)
    return [result.image for result in results]


async def _upscale(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    spec = Upscale.model_validate(job.spec)
    preset = services.registry.get(spec.model)
    image = await load_input(services.blobs, spec.image)
    result = await on_gpu(services, enhancer_for(services).upscale, preset, image, progress)
    return [Produced(result)]


async def _enhance(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    spec = Enhance.model_validate(job.spec)
    faces = services.registry.get(spec.model)
    upscaler = None if spec.upscaler is None else services.registry.get(spec.upscaler)
    image = await load_input(services.blobs, spec.image)
    run = partial(
        enhancer_for(services).enhance,
        faces=faces,
        upscaler=upscaler,
        fidelity=spec.fidelity,
        progress=progress,
    )
    result = await on_gpu(services, run, image)
    await _note_faces(services, job, [result])
    return [Produced(result.image)]


async def _note_faces(services: WorkerServices, job: Job, results: list[FaceRestoration]) -> None:
    restored = sum(len(result.faces) for result in results)
    message = f"{restored} face{'s' if restored != 1 else ''} restored" if restored else NO_FACE_FOUND
    log.info("job %s: %s", job.id, message)
    await events.publish(services.redis, job.id, "note", message=message, faces=restored)
