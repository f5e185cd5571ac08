"""What the HTTP API says about a job or a batch once it ends: the webhooks, and the bodies they carry.

A job submitted through the API has `ReplyTarget(platform="api", data={"api_key_id": …, "webhook_url": …,
"batch_id": …})` (the last two optional). When it ends (succeeded, failed or cancelled), `job_ended` records a
`job.<status>` delivery to its webhook, and, when it was its batch's last job to end, marks the batch finished
and records one `batch.completed` delivery. Both are idempotent (the delivery id comes from subject and event,
`finished_at` is set by a conditional update), so a job that ends twice, or two processes noticing the same
batch's end, record each delivery once.

Who calls it: the worker's `ApiReplier` (injected as the "api" replier by the composition root), which the job's
life (`jobs.lifecycle`) tells of every end, including a cancel made while the job was queued (the cancelled job
is moved to the head of the queue so a worker says so at once); and the API itself after a cancel or a batch's
creation, so nothing waits for a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from PIL import Image as PILImage

from jobs import webhooks
from jobs.replier import StoredImage
from storage.api_models import Batch
from storage.models import Image, Job, JobStatus

log = logging.getLogger(__name__)

API_PLATFORM = "api"
ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def image_url(image: Image) -> str:
    """Where the API serves an image's bytes, relative to the API's origin."""
    return f"/v1/images/{image.id}"


def job_body(job: Job, images: list[Image]) -> dict:
    """A job as the API describes it (the payload of its webhooks)."""
    body = {
        "id": job.id,
        "status": job.status.value,
        "kind": job.kind,
        "model": job.model,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "error": job.error,
        "images": [
            {"url": image_url(i), "index": i.index, "width": i.width, "height": i.height, "seed": i.seed}
            for i in images
        ],
    }
    batch_id = ((job.reply_target or {}).get("data") or {}).get("batch_id")
    if batch_id:
        body["batch_id"] = batch_id
    return body


async def batch_body(batch: Batch) -> dict:
    """A batch as the API describes it: its jobs in submission order, with counts by status."""
    jobs = {j.id: j for j in await Job.filter(id__in=batch.job_ids)}
    images = await Image.filter(job_id__in=list(jobs)).order_by("index")
    by_job: dict[str, list[Image]] = {}
    for image in images:
        by_job.setdefault(image.job_id, []).append(image)  # type: ignore[attr-defined]
    listed = [job_body(jobs[i], by_job.get(i, [])) for i in batch.job_ids if i in jobs]
    counts = {status.value: 0 for status in JobStatus}
    for job in listed:
        counts[job["status"]] += 1
    return {
        "id": batch.id,
        "status": "completed" if batch.finished_at is not None else "running",
        "created_at": _iso(batch.created_at),
        "finished_at": _iso(batch.finished_at),
        "counts": counts,
        "jobs": listed,
    }


async def job_ended(job_id: str) -> list[str]:
    """Record the webhooks an API job's end owes (see the module's docstring); return their delivery ids (empty
    for a job that has not ended, is not the API's, or has no webhook)."""
    job = await Job.get_or_none(id=job_id)
    if job is None or job.status not in ENDED:
        return []
    target = job.reply_target or {}
    if target.get("platform") != API_PLATFORM:
        return []
    data = target.get("data") or {}
    recorded = []
    if data.get("webhook_url"):
        images = await Image.filter(job_id=job.id).order_by("index")
        row = await webhooks.record(
            api_key_id=data.get("api_key_id"),
            subject=job.id,
            event=f"job.{job.status.value}",
            url=data["webhook_url"],
            payload=job_body(job, images),
        )
        recorded.append(row.id)
    if data.get("batch_id"):
        recorded += await batch_check(data["batch_id"])
    return recorded


async def batch_check(batch_id: str) -> list[str]:
    """If every job of the batch has ended: mark it finished (once) and record its `batch.completed` webhook;
    return the delivery id recorded, if any."""
    batch = await Batch.get_or_none(id=batch_id)
    if batch is None:
        return []
    statuses = await Job.filter(id__in=batch.job_ids).values_list("status", flat=True)
    if len(statuses) < len(batch.job_ids) or any(JobStatus(s) not in ENDED for s in statuses):
        return []
    if batch.finished_at is None:
        await Batch.filter(id=batch_id, finished_at=None).update(finished_at=datetime.now(UTC))
        await batch.refresh_from_db()
    if not batch.webhook_url:
        return []
    row = await webhooks.record(
        api_key_id=batch.api_key_id,  # type: ignore[attr-defined]
        subject=batch.id,
        event="batch.completed",
        url=batch.webhook_url,
        payload=await batch_body(batch),
    )
    return [row.id]


class ApiReplier:
    """The worker's replier for API jobs: nothing to show while they run (clients poll or follow the event
    stream); at their end, the webhooks. `recorded` is called after a delivery is written (the composition root
    passes the process's sweeper's `wake`, so it is sent at once)."""

    def __init__(self, recorded: Callable[[], None] | None = None) -> None:
        self._recorded = recorded

    async def queued(self, job: Job, position: int | None, eta_s: float | None) -> None:
        pass

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        pass

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        await self._ended(job)

    async def failure(self, job: Job, message: str) -> None:
        await self._ended(job)

    async def _ended(self, job: Job) -> None:
        if await job_ended(job.id) and self._recorded is not None:
            self._recorded()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
