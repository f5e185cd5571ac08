"""Retention: how long each tenant's images, inputs and training data are kept, and the periodic job that
deletes what is older (blobs and rows together).

Periods are in days, per tenant (`storage.retention.RetentionPolicy`, set with `atelier admin retention`), else
the operator's defaults (ATELIER_RETENTION_IMAGES_DAYS, _INPUTS_DAYS, _TRAINING_DAYS: 90, 7 and 30); 0 keeps
forever. What each covers, counted from the job's creation (it ends within minutes):

- images: a job's output images (`images/<job>/<i>.png`, the Image rows, a LoRA's sample images) and their
  gallery thumbnails (`thumbs/<sha256>-…`, shared by identical images: kept while one of them remains);
- inputs: the uploads a job used (`inputs/<sha256>.png`, shared by every job that uploaded the same picture:
  deleted when every job naming it is past its own tenant's input retention);
- training data: a training job's dataset zip (`datasets/<job>.zip`) and its checkpoint
  (`training/<job>/…`), which an ended job no longer needs. 30 days by default: long enough to look into a
  failed run, short for what is often a set of people's photos. The trained LoRA itself is kept until deleted.

`apply_retention` is safe to run twice at once and to die anywhere. For images and inputs it marks jobs first
(`Job.images_expired_at`, `inputs_expired_at`), then deletes each blob and after it the row naming it, so a
second run finds the rows left and finishes them; for training data it deletes the blobs, then marks. A job
marked expired is what makes the buttons, the gallery and the API say "expired" rather than "not found"
(`expired_words`). Workers of the image queue run it hourly as an arq cron job (`sweep`).

Known gap: an input stored for a request that was then refused never became a job, so nothing names it and it is
kept; an S3 lifecycle rule on `inputs/` (docs/retention.md) removes such strays too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from storage.blobs import BlobStore
from storage.models import Image, Job, JobStatus, Tenant
from storage.retention import JobInput, RetentionPolicy

log = logging.getLogger(__name__)

KINDS = ("images", "inputs", "training")
FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
BATCH = 200  # rows read at a time
MAX_PER_RUN = 5000  # images (and input keys, and training jobs) one run deletes at most; the next run goes on
THUMB_SIDE = 320  # bots.api.gallery.thumbs: thumbnails are stored per (content, side)


def thumb_key(sha256: str, side: int = THUMB_SIDE) -> str:
    """Where the gallery keeps an image's thumbnail: by content, so identical images share one."""
    return f"thumbs/{sha256}-{side}.jpg"


@dataclass(frozen=True)
class RetentionDays:
    """Days each kind of data is kept; 0 keeps it forever."""

    images: int = 90
    inputs: int = 7
    training: int = 30

    def __post_init__(self) -> None:
        for kind in KINDS:
            check_days(kind, getattr(self, kind))

    def describe(self) -> str:
        return ", ".join(f"{kind} {_period(getattr(self, kind))}" for kind in KINDS)


def check_days(kind: str, days: int) -> int:
    """`days` if it is a usable period for `kind`, else ValueError saying what is."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of data {kind!r}: expected one of {', '.join(KINDS)}")
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 36500:
        raise ValueError(f"{kind} retention must be a whole number of days from 1 to 36500, or 0 (forever)")
    return days


def _period(days: int) -> str:
    return "forever" if days == 0 else f"{days} day{'s' if days != 1 else ''}"


async def retention_of(tenant_id: int | None, defaults: RetentionDays) -> RetentionDays:
    """The periods that apply to the tenant: its own where set, the defaults elsewhere."""
    row = None if tenant_id is None else await RetentionPolicy.get_or_none(tenant_id=tenant_id)
    if row is None:
        return defaults
    own = {kind: getattr(row, f"{kind}_days") for kind in KINDS}
    return replace(defaults, **{kind: days for kind, days in own.items() if days is not None})


async def set_retention(
    tenant: Tenant, defaults: RetentionDays, days: dict[str, int], clear: list[str]
) -> RetentionDays:
    """Set the tenant's own periods (`days`: kind -> days, 0 forever) and clear others back to the default;
    return what now applies. ValueError, before anything is written, for an unknown kind or a bad period."""
    for kind, value in days.items():
        check_days(kind, value)
    for kind in clear:
        check_days(kind, 0)
    changes = {f"{kind}_days": value for kind, value in days.items()} | {
        f"{kind}_days": None for kind in clear
    }
    if changes:
        row, _ = await RetentionPolicy.get_or_create(tenant=tenant)
        await RetentionPolicy.filter(id=row.id).update(**changes)
    return await retention_of(tenant.id, defaults)


def expired_words(job: Job) -> str | None:
    """What a button, the gallery or the API says of an image of `job` once retention deleted it; None while
    the job's images are kept. The period is how long they were in fact kept."""
    if job.images_expired_at is None:
        return None
    days = max(0, (job.images_expired_at - job.created_at).days)
    return f"This image has expired (kept {_period(days) if days else 'less than a day'} on this server)."


@dataclass
class Swept:
    """What one run deleted."""

    images: int = 0
    inputs: int = 0
    training: int = 0


async def apply_retention(blobs: BlobStore, defaults: RetentionDays, *, now: datetime | None = None) -> Swept:
    """Delete what is past its tenant's retention at `now` (default: the current time); see the module doc."""
    now = now or datetime.now(UTC)
    swept = Swept()
    for tenant_id in [None, *await Tenant.all().order_by("id").values_list("id", flat=True)]:
        days = await retention_of(tenant_id, defaults)
        await _mark(tenant_id, "images_expired_at", days.images, now)
        await _mark(tenant_id, "inputs_expired_at", days.inputs, now)
        swept.training += await _delete_training_data(blobs, tenant_id, days.training, now)
    swept.images = await _delete_images(blobs)
    swept.inputs = await _delete_inputs(blobs)
    if swept.images or swept.inputs or swept.training:
        log.info(
            "retention deleted %d images, %d inputs and the training data of %d jobs",
            swept.images,
            swept.inputs,
            swept.training,
        )
    return swept


def _old_jobs(tenant_id: int | None, days: int, now: datetime):
    query = Job.filter(created_at__lt=now - timedelta(days=days), status__in=FINAL)
    return query.filter(tenant_id__isnull=True) if tenant_id is None else query.filter(tenant_id=tenant_id)


async def _mark(tenant_id: int | None, field: str, days: int, now: datetime) -> None:
    if days:
        await _old_jobs(tenant_id, days, now).filter(**{f"{field}__isnull": True}).update(**{field: now})


async def _delete_images(blobs: BlobStore) -> int:
    deleted = 0
    while deleted < MAX_PER_RUN:
        rows = await Image.filter(job__images_expired_at__isnull=False).order_by("id").limit(BATCH)
        if not rows:
            break
        for image in rows:
            await blobs.delete(image.blob_key)
            others = Image.filter(sha256=image.sha256, job__images_expired_at__isnull=True)
            if not await others.exists():
                await blobs.delete(thumb_key(image.sha256))
            await Image.filter(id=image.id).delete()
            deleted += 1
    return deleted


async def _delete_inputs(blobs: BlobStore) -> int:
    deleted = 0
    while deleted < MAX_PER_RUN:
        keys = (
            await JobInput.filter(job__inputs_expired_at__isnull=False)
            .order_by("blob_key")
            .distinct()
            .limit(BATCH)
            .values_list("blob_key", flat=True)
        )
        if not keys:
            break
        for key in keys:
            if not await JobInput.filter(blob_key=key, job__inputs_expired_at__isnull=True).exists():
                await blobs.delete(key)
                deleted += 1
            expired = await JobInput.filter(blob_key=key, job__inputs_expired_at__isnull=False).values_list(
                "id", flat=True
            )
            await JobInput.filter(id__in=list(expired)).delete()
    return deleted


async def _delete_training_data(blobs: BlobStore, tenant_id: int | None, days: int, now: datetime) -> int:
    """Datasets and checkpoints of the tenant's ended training jobs, including the checkpoint a job that arq gave
    up on (`jobs.lifecycle.abandon`) leaves behind: blobs first, then the mark."""
    if not days:
        return 0
    from jobs.training import checkpoint_key  # the training module is a worker's; load it only here

    jobs = await (
        _old_jobs(tenant_id, days, now)
        .filter(kind="train_lora", training_expired_at__isnull=True)
        .order_by("id")
        .limit(MAX_PER_RUN)
    )
    for job in jobs:
        dataset = job.spec.get("dataset")
        if isinstance(dataset, str) and dataset:
            await blobs.delete(dataset)
        await blobs.delete(checkpoint_key(job.id))
        await Job.filter(id=job.id).update(training_expired_at=now)
    return len(jobs)


async def sweep(ctx: dict) -> dict:
    """The hourly arq cron job of image workers (`jobs.worker.create_worker`): `apply_retention` now."""
    swept = await apply_retention(ctx["services"].blobs, ctx["retention"])
    return {"images": swept.images, "inputs": swept.inputs, "training": swept.training}
