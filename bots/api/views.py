"""How the API shows a job and its images (`GET /v1/jobs/{id}`, submissions, the SSE `end` event)."""

from __future__ import annotations

from datetime import datetime

from bots.api.safety import withheld_images
from bots.api.services import ApiServices
from jobs import events
from jobs.queue_status import queue_position
from jobs.relax import lane_of
from jobs.retention import expired_words
from storage.models import Image, Job, JobStatus

LIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def image_url(image_id: int) -> str:
    return f"/v1/images/{image_id}"


async def image_views(job: Job) -> list[dict]:
    images = await Image.filter(job_id=job.id).order_by("index")
    withheld = await withheld_images(job, images)
    return [
        {
            "id": image.id,
            "index": image.index,
            "url": image_url(image.id),
            "width": image.width,
            "height": image.height,
            "seed": image.seed,
            "sha256": image.sha256,
            "size_bytes": image.size_bytes,
            "flagged": image.flagged,
            "withheld": image.id in withheld,
        }
        for image in images
    ]


async def job_view(services: ApiServices, job: Job) -> dict:
    """A job as the API shows it: its state, where it stands in the queue (position 1 starts next, 0 is
    running; null once it has left the queue), its ETA in seconds, its last progress, and its images."""
    position = eta_s = progress = None
    if job.status in LIVE:
        position, eta_s = await queue_position(services.redis, services.queue_name, job.id)
        latest = await events.latest(services.redis, job.id, "progress")
        if latest is not None:
            progress = {"step": latest.get("step"), "total": latest.get("total")}
    return {
        "id": job.id,
        "kind": job.kind,
        "model": job.model,
        "status": job.status.value,
        "lane": await lane_of(services.redis, job.id),
        "position": position,
        "eta_s": None if eta_s is None else round(eta_s, 2),
        "progress": progress,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "error": job.error,
        "spec": _public_spec(job.spec),
        "images": await image_views(job) if job.status == JobStatus.SUCCEEDED else [],
        "images_expired": expired_words(job),
        "url": job_url(job.id),
        "events_url": f"{job_url(job.id)}/events",
    }


def _public_spec(spec: dict) -> dict:
    """The job's parameters without the blob keys of its inputs (the store's business, not the client's)."""
    return {k: v for k, v in spec.items() if k not in ("image", "mask", "dataset")}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
