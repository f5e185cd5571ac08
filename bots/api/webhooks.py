"""The HTTP API's webhooks: the URL's check when a client submits it, and the deliveries a job's or a batch's end
owes (`jobs.webhooks` records, signs and sends them).

A job submitted through the API has `ReplyTarget(platform="api", data={"api_key_id": …, "webhook_url": …,
"batch_id": …})` (the last two optional). When it ends (succeeded, failed or cancelled), `job_ended` records a
`job.<status>` delivery whose payload is the job as `GET /v1/jobs/{id}` shows it, and, when it was the last of
its batch to end, marks the batch finished and records one `batch.completed` delivery (the batch as
`GET /v1/batches/{id}` shows it). Recording is idempotent (the delivery id comes from subject and event;
`finished_at` is set by a conditional update), so a job that ends twice, or two processes noticing one batch's
end, record each delivery once. A job's delivery within a batch is keyed by batch and job, so a job that a batch
reuses from the result cache still gets its `job.succeeded` to that batch's webhook.

Who records: the worker's `ApiReplier` (injected as the "api" replier by the composition root), which the job's
life (`jobs.lifecycle`) tells of every end, a cancel made while the job was queued included (the cancelled job
is moved to the head of the queue, so a worker says so at once); and the API itself after a cancel and after a
batch is created, so nothing waits for a worker there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from PIL import Image as PILImage

from bots.api.errors import ApiError
from bots.api.views import image_views, job_url
from jobs import webhooks
from jobs.outbound import OutboundRefused, OutboundRules, check_url
from jobs.replier import StoredImage
from storage.api_models import Batch
from storage.models import Job, JobStatus

log = logging.getLogger(__name__)

API_PLATFORM = "api"
ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
BATCH_EVENT = "batch.completed"


def outbound_rules(settings: object | None) -> OutboundRules:
    """The operator's rules for webhook receivers (`ATELIER_WEBHOOK_ALLOW_PRIVATE`, `…_ALLOWED_HOSTS`); without
    settings, public addresses only."""
    if settings is None:
        return OutboundRules()
    return OutboundRules.of(settings.webhook_allow_private, settings.webhook_allowed_hosts)  # type: ignore[attr-defined]


async def check_webhook_url(settings: object | None, url: str | None, field: str = "webhook_url") -> None:
    """Refuse (422 `invalid_webhook_url`, naming `field`) a webhook URL that is not http(s), does not resolve,
    or leads to an address the outbound rules forbid (`jobs.outbound`). It is checked again at each send."""
    if url is None:
        return
    try:
        await check_url(url, outbound_rules(settings))
    except OutboundRefused as exc:
        raise ApiError(422, "invalid_webhook_url", f"{field} {exc}", field) from None


# --- what a delivery carries -----------------------------------------------------------------------------------


async def ended_job_view(job: Job) -> dict:
    """An ended job as `GET /v1/jobs/{id}` shows it (nothing left to wait for: no position, ETA or progress)."""
    body = {
        "id": job.id,
        "kind": job.kind,
        "model": job.model,
        "status": job.status.value,
        "position": None,
        "eta_s": None,
        "progress": None,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "error": job.error,
        "images": await image_views(job) if job.status == JobStatus.SUCCEEDED else [],
        "url": job_url(job.id),
    }
    batch_id = _target(job).get("batch_id")
    if batch_id:
        body["batch_id"] = batch_id
    return body


def batch_url(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


async def batch_view(batch: Batch) -> dict:
    """A batch as `GET /v1/batches/{id}` shows it: its jobs in submission order (status, error, images), and
    how many are in each status."""
    jobs = {job.id: job for job in await Job.filter(id__in=batch.job_ids)}
    listed = []
    for job_id in batch.job_ids:
        job = jobs.get(job_id)
        if job is None:
            continue
        listed.append(
            {
                "id": job.id,
                "status": job.status.value,
                "error": job.error,
                "images": await image_views(job) if job.status == JobStatus.SUCCEEDED else [],
                "url": job_url(job.id),
            }
        )
    counts = {status.value: 0 for status in JobStatus}
    for entry in listed:
        counts[entry["status"]] += 1
    return {
        "id": batch.id,
        "status": "completed" if batch.finished_at is not None else "running",
        "created_at": _iso(batch.created_at),
        "finished_at": _iso(batch.finished_at),
        "webhook_url": batch.webhook_url,
        "counts": counts,
        "jobs": listed,
        "url": batch_url(batch.id),
    }


# --- recording ---------------------------------------------------------------------------------------------------


async def job_ended(job_id: str) -> list[str]:
    """Record what an API job's end owes (see the module's docstring); return the delivery ids (none for a job
    that has not ended, is not the API's, or has no webhook and no batch)."""
    job = await Job.get_or_none(id=job_id)
    if job is None or job.status not in ENDED or (job.reply_target or {}).get("platform") != API_PLATFORM:
        return []
    data = _target(job)
    recorded = []
    if data.get("webhook_url"):
        recorded.append(
            await record_job(
                job, api_key_id=data.get("api_key_id"), url=data["webhook_url"], batch_id=data.get("batch_id")
            )
        )
    if data.get("batch_id"):
        recorded += await batch_check(data["batch_id"])
    return recorded


async def record_job(
    job: Job, *, api_key_id: int | None, url: str, batch_id: str | None = None, key: str | None = None
) -> str:
    """Record the `job.<status>` delivery of an ended job to `url`: once per job, or per batch and job within a
    batch, or per `key` (a request answered from the result cache with the earlier job)."""
    row = await webhooks.record(
        api_key_id=api_key_id,
        subject=job.id,
        key=f"{key}:{job.id}" if key else f"{batch_id}:{job.id}" if batch_id else job.id,
        event=f"job.{job.status.value}",
        url=url,
        payload=await ended_job_view(job),
    )
    return row.id


async def batch_check(batch_id: str) -> list[str]:
    """If every job of the batch has ended: mark it finished (once) and record its `batch.completed` delivery;
    return the delivery id recorded, if any."""
    batch = await Batch.get_or_none(id=batch_id)
    if batch is None:  # still being created: its creator checks once it exists
        return []
    statuses = await Job.filter(id__in=batch.job_ids).values_list("status", flat=True)
    if len(statuses) < len(set(batch.job_ids)) or any(JobStatus(s) not in ENDED for s in statuses):
        return []
    if batch.finished_at is None:
        await Batch.filter(id=batch_id, finished_at=None).update(finished_at=datetime.now(UTC))
        await batch.refresh_from_db()
    if not batch.webhook_url:
        return []
    row = await webhooks.record(
        api_key_id=batch.api_key_id,  # type: ignore[attr-defined]
        subject=batch.id,
        event=BATCH_EVENT,
        url=batch.webhook_url,
        payload=await batch_view(batch),
    )
    return [row.id]


async def batch_created(batch: Batch) -> list[str]:
    """After a batch's row is written: record the deliveries of its jobs that ended already (reused from the
    result cache, or finished before the row existed), and its completion if they all have."""
    recorded = []
    if batch.webhook_url:
        for job in await Job.filter(id__in=batch.job_ids, status__in=list(ENDED)):
            recorded.append(
                await record_job(
                    job,
                    api_key_id=batch.api_key_id,  # type: ignore[attr-defined]
                    url=batch.webhook_url,
                    batch_id=batch.id,
                )
            )
    return recorded + await batch_check(batch.id)


class ApiReplier:
    """The worker's replier for API jobs: nothing to show while they run (clients poll or follow the event
    stream); at their end, the webhooks. `recorded` is called after a delivery is written (the composition root
    passes the process's sweeper's `wake`, so it is sent at once)."""

    def __init__(self, recorded: Callable[[], None] | None = None) -> None:
        self._recorded = recorded

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        pass

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        pass

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        await self._ended(job)

    async def failure(self, job: Job, message: str) -> None:
        await self._ended(job)  # also after a failed result post: job_ended reads the job's status itself

    async def _ended(self, job: Job) -> None:
        if await job_ended(job.id) and self._recorded is not None:
            self._recorded()


def _target(job: Job) -> dict:
    return (job.reply_target or {}).get("data") or {}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
