"""Job functions: what a worker runs for each kind of job. Every one may run more than once (arq retries a job
whose worker died), so each step is idempotent by job id: image keys and rows are fixed by (job, index), a job
that already succeeded is only re-delivered, and a delivered one is left alone."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime

from PIL import Image as PILImage

from engine.generate import TextToImage
from engine.output import png_bytes
from jobs import metrics
from jobs.progress import ProgressPump
from jobs.replier import Fanout, Replier, StoredImage, StreamReplier
from jobs.services import WorkerServices
from jobs.specs import Imagine
from storage.models import Image, Job, JobStatus

log = logging.getLogger(__name__)


async def imagine(ctx: dict, job_id: str) -> dict:
    """Generate the images of an `Imagine` job, store them, and deliver them to whoever asked."""
    services: WorkerServices = ctx["services"]
    job = await Job.get(id=job_id)
    replier = _replier_for(services, job)
    if job.status == JobStatus.CANCELLED:
        return {"status": job.status.value}
    if job.status == JobStatus.SUCCEEDED:
        # A retry after the images were stored: deliver them if the first run died before it could.
        if job.delivered_at is None:
            await _deliver(job, replier, await _stored_images(job))
        return {"status": job.status.value, "images": await job.images.all().count()}

    spec = Imagine.model_validate(job.spec)
    job.status, job.started_at, job.attempts = JobStatus.RUNNING, datetime.now(UTC), job.attempts + 1
    await job.save(update_fields=["status", "started_at", "attempts"])
    try:
        preset = services.registry.get(spec.model)
        request = TextToImage(
            prompt=spec.prompt,
            negative=spec.negative,
            width=spec.width,
            height=spec.height,
            steps=spec.steps,
            guidance=spec.guidance,
            seed=spec.seed,
            count=spec.count,
        )
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        async with ProgressPump(loop, replier, job) as pump:
            images = await loop.run_in_executor(
                services.gpu, services.engine.txt2img, preset, request, pump.report
            )
        gpu_seconds = time.perf_counter() - started
    except ValueError as exc:  # the request cannot be done (a limit, an unknown model): the user's to fix
        return await _fail(job, replier, str(exc))
    except Exception:
        log.exception("job %s failed", job_id)
        return await _fail(job, replier, f"Something went wrong on our side. Reference: {job_id}")

    stored = [await _store(services, job, i, spec.seed + i, image) for i, image in enumerate(images)]
    job.status, job.finished_at, job.gpu_seconds = JobStatus.SUCCEEDED, datetime.now(UTC), gpu_seconds
    await job.save(update_fields=["status", "finished_at", "gpu_seconds"])
    metrics.JOBS.labels(job.kind, spec.model, "succeeded").inc()
    metrics.IMAGES.labels(spec.model, "succeeded").inc(len(stored))
    metrics.GENERATION_SECONDS.labels(job.kind, spec.model).observe(gpu_seconds)
    _export_cache_stats(services)
    await _deliver(job, replier, stored)
    return {"status": job.status.value, "images": len(stored), "gpu_seconds": gpu_seconds}


def _replier_for(services: WorkerServices, job: Job) -> Replier:
    stream = StreamReplier(services.redis)
    platform = (job.reply_target or {}).get("platform", "cli")
    platform_replier = services.repliers.get(platform)
    return Fanout(stream, platform_replier) if platform_replier else stream


async def _store(
    services: WorkerServices, job: Job, index: int, seed: int, image: PILImage.Image
) -> StoredImage:
    data = png_bytes(image)
    key = f"images/{job.id}/{index}.png"
    await services.blobs.put(key, data, "image/png")
    digest = hashlib.sha256(data).hexdigest()
    await Image.update_or_create(
        job=job,
        index=index,
        defaults={
            "blob_key": key,
            "width": image.width,
            "height": image.height,
            "size_bytes": len(data),
            "seed": seed,
            "sha256": digest,
        },
    )
    return StoredImage(index, key, image.width, image.height, seed, len(data), digest)


async def _stored_images(job: Job) -> list[StoredImage]:
    rows = await Image.filter(job=job).order_by("index")
    return [StoredImage(r.index, r.blob_key, r.width, r.height, r.seed, r.size_bytes, r.sha256) for r in rows]


async def _deliver(job: Job, replier: Replier, images: list[StoredImage]) -> None:
    await replier.result(job, images)
    job.delivered_at = datetime.now(UTC)
    await job.save(update_fields=["delivered_at"])


async def _fail(job: Job, replier: Replier, message: str) -> dict:
    job.status, job.finished_at, job.error = JobStatus.FAILED, datetime.now(UTC), message
    await job.save(update_fields=["status", "finished_at", "error"])
    metrics.JOBS.labels(job.kind, job.model, "failed").inc()
    await replier.failure(job, message)
    return {"status": job.status.value, "error": message}


def _export_cache_stats(services: WorkerServices) -> None:
    cache = services.engine.cache
    metrics.MODEL_CACHE_HITS.set(cache.hits)
    metrics.MODEL_CACHE_MISSES.set(cache.misses)
    metrics.MODEL_LOAD_SECONDS.set(cache.load_seconds)
