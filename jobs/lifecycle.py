"""The life of every job, whatever its kind: run → store → deliver, or fail, each step idempotent by job id.

A job function (`jobs.functions`) only says how to produce images from its spec; `run_job` does the rest, the
same way for every kind. Any job may run more than once (arq retries a job whose worker died), so image keys and
rows are fixed by (job, index), a job that already succeeded is only re-delivered, a delivered one is left
alone, and a cancelled one never runs.

A database outage does not fail a job: when a step fails and the database does not answer, `run_job` waits for
it (logging once, checking with backoff, within the job's time limit) and runs the job again from the start,
which its idempotence makes safe (images made before the outage are made again; nothing is charged twice).

A relax-lane job (jobs.relax) that can resume gives way between steps to a fast job that waits: its latents and
the GPU seconds so far are saved, it goes back to the queue as queued (arq's `Retry`, not counted as a try), and
its next run, on any worker, goes on from the saved step; its GPU seconds are those of all its runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.worker import Retry
from PIL import Image as PILImage
from redis.exceptions import RedisError
from tortoise.expressions import F

from engine.fingerprint import model_identity
from engine.generate import Preempted
from engine.output import png_bytes, with_text
from engine.registry import Preset
from jobs import events, gpu_time, metrics, provenance, recipe, relax, routing
from jobs.progress import ProgressPump
from jobs.replier import Fanout, Replier, StoredImage, StreamReplier
from jobs.services import WorkerServices
from quotas import ledger
from quotas.cancel import CancelWatch, cancel_key
from quotas.estimates import record_seconds, spec_shape
from storage import db
from storage.models import Image, Job, JobStatus

log = logging.getLogger(__name__)

Progress = Callable[[int, int, PILImage.Image | None], None]


@dataclass(frozen=True)
class Produced:
    """One image a job made, with the seed that made it (0 where no seed is involved, e.g. upscaling)."""

    image: PILImage.Image
    seed: int = 0
    flagged: bool = False  # by the model's safety checker (see `generated`)


Produce = Callable[[WorkerServices, Job, Progress], Awaitable[list[Produced]]]


async def generated(
    services: WorkerServices, preset: Preset, images: list[PILImage.Image], seed: int
) -> list[Produced]:
    """Images a model generated from `seed` (image i from `seed + i`), each flagged or not by the preset's
    safety checker (engine.safety; on the GPU thread). What a flag means is the front-end's business."""
    flags = await on_gpu(services, services.engine.safety_flags, preset, images)
    return [
        Produced(image, seed + i, flagged)
        for i, (image, flagged) in enumerate(zip(images, flags, strict=True))
    ]


async def on_gpu(services: WorkerServices, fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking torch work on the worker's single GPU thread, keeping the event loop free."""

    def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        return fn(*args), time.perf_counter() - started

    result, seconds = await asyncio.get_running_loop().run_in_executor(services.gpu, timed)
    gpu_time.charge(seconds)
    return result


class JobCancelled(Exception):
    """Raised in the GPU thread by the progress callback once the job's cancel was requested: the generation
    ends after the step it was on."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"cancelled after step {step} of {total}")
        self.step, self.total = step, total


DATABASE_WAIT_S = (0.5, 1, 2, 4, 5)  # between checks while the database is down; the last repeats


async def run_job(ctx: dict, job_id: str, produce: Produce) -> dict:
    """Run one job of any kind (see `_run_once`), again from the start after a database outage: a step that
    fails while the database does not answer waits for it instead of failing the job (see the module doc)."""
    while True:
        try:
            return await _run_once(ctx, job_id, produce)
        except Exception:
            if await db.answers():
                raise
            await _wait_for_database(job_id)


async def _wait_for_database(job_id: str) -> None:
    log.warning("job %s: the database does not answer; waiting for it to run the job again", job_id)
    waited = 0
    while not await db.answers():
        await asyncio.sleep(DATABASE_WAIT_S[min(waited, len(DATABASE_WAIT_S) - 1)])
        waited += 1
    log.warning("job %s: the database answers again; running the job again", job_id)


async def _run_once(ctx: dict, job_id: str, produce: Produce) -> dict:
    """Run one job of any kind: `produce` makes the images; this function owns every state change.

    The quota reservation is closed exactly once whatever happens: settled with the GPU seconds used on success,
    refunded on failure or cancel (`quotas.ledger` makes a second close a no-op, so a job that runs twice
    settles once). A cancel requested while it runs stops it after the current step (`quotas.cancel`)."""
    services: WorkerServices = ctx["services"]
    if ctx.get("queue_name"):  # taken: a fast job no longer waits (whether it runs now or had ended)
        await relax.note_taken(services.redis, ctx["queue_name"], job_id)
    relax_running: dict[str, relax.GiveWay] = ctx.get("relax_running", {})  # shared by the worker's jobs
    job = await Job.get(id=job_id)
    replier = replier_for(services, job)
    # Only a queued job, or a running one whose worker died, may start; a cancel that lands between the read
    # above and this update wins (the update matches nothing), so a cancelled job never runs.
    now = datetime.now(UTC)
    claimed = await Job.filter(id=job_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).update(
        status=JobStatus.RUNNING, started_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        await job.refresh_from_db()
        return await _already_ended(services, job, replier)
    job.status, job.started_at, job.attempts = JobStatus.RUNNING, now, job.attempts + 1
    tier = await routing.tier_of(services.redis, job_id)
    if job.attempts == 1:  # a retry's wait would count the first attempt's run
        metrics.QUEUE_WAIT_SECONDS.labels(job.model, tier).observe(_seconds_between(job.created_at, now))
    meter = gpu_time.start()
    limit_s = ctx.get("job_timeout")  # the worker's ATELIER_JOB_TIMEOUT (or the training one)
    limit = asyncio.timeout(limit_s)
    try:
        async with CancelWatch(services.redis, job_id) as watch, limit:
            try:
                if watch.event.is_set():
                    raise JobCancelled(0, int(job.spec.get("steps", 0)))
                async with ProgressPump(asyncio.get_running_loop(), replier, job) as pump:
                    progress = _cancellable(pump.report, watch.event)
                    lane = await _lane(services, job, ctx.get("queue_name"), relax_running)
                    if lane == relax.RELAX and await _resumable(services, job):
                        relax_running[job_id] = relax.GiveWay()
                        progress = relax.preemptible(
                            progress,
                            loop=asyncio.get_running_loop(),
                            redis=services.redis,
                            queue_name=ctx["queue_name"],
                            job_id=job_id,
                            give_way=relax_running[job_id],
                        )
                    elif lane == relax.FAST:
                        for give_way in relax_running.values():  # this worker's GPU runs them: they yield
                            give_way.give_way_to(job_id)
                    try:
                        produced = await produce(services, job, progress)
                    finally:
                        relax_running.pop(job_id, None)
            except asyncio.CancelledError:
                # Cancelled: the time limit, or arq (shutdown, or its own abort). The GPU thread cannot be
                # interrupted: stop it at its next step. A shutdown's job is retried and settles then.
                watch.event.set()
                if await Job.filter(id=job_id, status=JobStatus.CANCELLED).exists():
                    await ledger.refund(job_id)
                raise
    except JobCancelled as cancel:
        return await _cancelled(services, job, replier, cancel)
    except Preempted as preempted:
        await _give_way(services, job, preempted, meter.seconds)
        raise Retry() from None  # back in the queue at its place in the relax lane; arq takes it again
    except ValueError as exc:  # the request cannot be done (a limit, an unknown model): the user's to fix
        await ledger.refund(job_id)
        return await _fail(job, replier, str(exc))
    except Exception as exc:
        if not await db.answers():
            raise  # an outage, not the job's fault: `run_job` waits for the database and runs it again
        await ledger.refund(job_id)
        if isinstance(exc, TimeoutError) and limit.expired():
            log.warning("job %s stopped at its time limit of %s s", job_id, limit_s)
            return await _fail(
                job,
                replier,
                f"This job took longer than the {limit_s:.0f} s limit and was stopped; nothing was charged. "
                f"Reference: {job_id}",
            )
        log.exception("job %s failed", job_id)
        return await _fail(job, replier, f"Something went wrong on our side. Reference: {job_id}")
    # A first run was never pre-empted: only a later one may have earlier runs' GPU seconds to add.
    carried = await relax.load(services.redis, job_id) if job.attempts > 1 and job.kind == "imagine" else None
    gpu_seconds = meter.seconds + (
        carried.gpu_seconds if carried else 0.0
    )  # earlier runs of a pre-empted job

    stored = [await _store(services, job, i, p) for i, p in enumerate(produced)]
    job.status, job.finished_at, job.gpu_seconds = JobStatus.SUCCEEDED, datetime.now(UTC), gpu_seconds
    await job.save(update_fields=["status", "finished_at", "gpu_seconds"])
    await ledger.settle(job_id, gpu_seconds=gpu_seconds, images=len(stored))
    try:  # the estimates learn from it; a Redis outage must not fail a job whose images are stored
        await record_seconds(services.redis, **spec_shape(job.spec) | {"seconds": gpu_seconds})
    except (RedisError, OSError) as exc:
        log.warning("job %s: its GPU time was not recorded for the estimates (%s)", job_id, exc)
    metrics.JOBS.labels(job.kind, job.model, "succeeded").inc()
    metrics.IMAGES.labels(job.model, "succeeded").inc(len(stored))
    metrics.GENERATION_SECONDS.labels(job.kind, job.model).observe(gpu_seconds)
    if carried is not None and carried.preemptions:
        await relax.forget(services.redis, job_id)
    metrics.END_TO_END_SECONDS.labels(job.model, tier).observe(
        _seconds_between(job.created_at, job.finished_at)
    )
    _export_cache_stats(services)
    await _deliver(job, replier, stored)
    return {"status": job.status.value, "images": len(stored), "gpu_seconds": gpu_seconds}


async def abandon(services: WorkerServices, job_id: str) -> None:
    """Close a job that arq gave up on without running it (its tries used up by workers that died under it,
    or its queue entry expired): failed, refunded and told to its user, unless it had already ended."""
    job = await Job.get_or_none(id=job_id)
    if job is None:
        return
    replier = replier_for(services, job)
    if job.attempts:
        message = (
            f"This job was interrupted {job.attempts} time{'s' if job.attempts != 1 else ''} by a worker that "
            f"stopped (a crash or a restart) and was given up; nothing was charged. Reference: {job_id}"
        )
    else:
        message = f"This job could not be started and was given up; nothing was charged. Reference: {job_id}"
    ended = await Job.filter(id=job_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).update(
        status=JobStatus.FAILED, finished_at=datetime.now(UTC), error=message
    )
    await job.refresh_from_db()
    if not ended:
        if job.delivered_at is None:  # e.g. cancelled while queued, then dropped by arq: still owed a word
            await _already_ended(services, job, replier)
        return
    log.warning("job %s given up by arq after %d attempts", job_id, job.attempts)
    await ledger.refund(job_id)
    metrics.JOBS.labels(job.kind, job.model, "failed").inc()
    await replier.failure(job, message)
    job.delivered_at = datetime.now(UTC)
    await job.save(update_fields=["delivered_at"])


async def _already_ended(services: WorkerServices, job: Job, replier: Replier) -> dict:
    """A job that is not to run (again): close its reservation and deliver what is owed, if a crash (or a cancel
    made while it was queued) left that undone."""
    if job.status == JobStatus.SUCCEEDED:
        images = await _stored_images(job)
        await ledger.settle(job.id, gpu_seconds=job.gpu_seconds, images=len(images))
        # A retry after the images were stored: deliver them if the first run died before it could.
        if job.delivered_at is None:
            await _deliver(job, replier, images)
        return {"status": job.status.value, "images": len(images)}
    await ledger.refund(job.id)
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED) and job.delivered_at is None:
        # Cancelled while queued, failed by a worker that died before it said so, or failed by the front-end's
        # reconciliation (arq lost it): tell the platform, whose status message still says "queued" or shows
        # progress. At least once: a death between the word and the record below says it again.
        await replier.failure(job, job.error or "Cancelled.")
        job.delivered_at = datetime.now(UTC)
        await job.save(update_fields=["delivered_at"])
    return {"status": job.status.value}


async def announce_end(ctx: dict, job_id: str) -> dict:
    """A worker job: tell the user of a job that ended without a word (`jobs.queue.reconcile` fails a job that
    arq lost and enqueues this, since only workers have the platforms' repliers)."""
    services: WorkerServices = ctx["services"]
    job = await Job.get_or_none(id=job_id)
    if job is None or job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return {"status": job.status.value if job else "missing"}
    return await _already_ended(services, job, replier_for(services, job))


async def _lane(
    services: WorkerServices, job: Job, queue_name: str | None, relax_running: dict[str, relax.GiveWay]
) -> str | None:
    """The job's lane where it matters to this run (None where it does not, and Redis is not asked): a job that
    could give way if it is a relax one, or any job while this worker runs relax jobs it may have to stop."""
    if not queue_name or not (relax_running or relax.resumable_spec(job.kind, job.spec)):
        return None
    return await relax.lane_of(services.redis, job.id)


async def _resumable(services: WorkerServices, job: Job) -> bool:
    """Whether this relax job's generation can stop between steps and resume (jobs.relax)."""
    if not relax.resumable_spec(job.kind, job.spec):
        return False
    preset = services.registry.get(job.spec["model"])
    return await on_gpu(services, services.engine.resumable, preset)


async def _give_way(services: WorkerServices, job: Job, preempted: Preempted, gpu_seconds: float) -> None:
    """Save a pre-empted job's state for its next run and put it back as queued (see the module's docstring); its
    event stream says where it stopped and for which job, and its status message says it is queued again."""
    await relax.save(services.redis, job.id, preempted, gpu_seconds)
    await Job.filter(id=job.id, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
    await relax.give_way(services.redis, job.id)
    log.info("job %s gave way to fast job %s after step %d", job.id, preempted.by, preempted.step)
    await events.publish(
        services.redis, job.id, "preempted", step=preempted.step, total=preempted.total, by=preempted.by
    )
    try:
        await replier_for(services, job).queued(job, None, None, lane=relax.RELAX)
    except Exception:  # a status edit is disposable: the job is safely queued already
        log.warning("job %s: telling its platform it is queued again failed", job.id, exc_info=True)


def _cancellable(report: Progress, cancel: threading.Event) -> Progress:
    """`report`, preceded by a check of the cancel flag: it runs in the GPU thread after every step."""

    def report_or_stop(step: int, total: int, preview: PILImage.Image | None) -> None:
        if cancel.is_set():
            raise JobCancelled(step, total)
        report(step, total, preview)

    return report_or_stop


async def _cancelled(services: WorkerServices, job: Job, replier: Replier, cancel: JobCancelled) -> dict:
    by = await services.redis.get(cancel_key(job.id))
    who = by.decode() if isinstance(by, bytes) else (by or "request")
    message = f"Cancelled by {who} after step {cancel.step} of {cancel.total}."
    job.status, job.finished_at, job.error = JobStatus.CANCELLED, datetime.now(UTC), message
    await Job.filter(id=job.id, status=JobStatus.RUNNING).update(
        status=job.status, finished_at=job.finished_at, error=message
    )
    await ledger.refund(job.id)
    metrics.JOBS.labels(job.kind, job.model, "cancelled").inc()
    await replier.failure(job, message)
    job.delivered_at = datetime.now(UTC)
    await job.save(update_fields=["delivered_at"])
    return {"status": job.status.value, "step": cancel.step}


def replier_for(services: WorkerServices, job: Job) -> Replier:
    """The job's event stream, plus the replier of the platform it came from (if this worker has one)."""
    stream = StreamReplier(services.redis)
    platform_replier = services.repliers.get(_platform(job))
    return Fanout(stream, platform_replier) if platform_replier else stream


async def _store(services: WorkerServices, job: Job, index: int, produced: Produced) -> StoredImage:
    plain = await asyncio.to_thread(png_bytes, produced.image)
    data = await _annotated(services, job, index, produced.seed, plain)
    key = f"images/{job.id}/{index}.png"
    await services.blobs.put(key, data, "image/png")
    # The digest names the pixels: that of the bare PNG, the name jobs.inputs.store_input gives the same picture
    # uploaded again (so an upscale of a flagged result is known, bots/api/safety.py), and the same for every
    # signing of one image, unlike the stored file's bytes.
    digest = hashlib.sha256(plain).hexdigest()
    width, height = produced.image.size
    await Image.update_or_create(
        job=job,
        index=index,
        defaults={
            "blob_key": key,
            "width": width,
            "height": height,
            "size_bytes": len(data),
            "seed": produced.seed,
            "sha256": digest,
            "flagged": produced.flagged,
        },
    )
    return StoredImage(index, key, width, height, produced.seed, len(data), digest, produced.flagged)


async def _annotated(services: WorkerServices, job: Job, index: int, seed: int, plain: bytes) -> bytes:
    """The image as stored and posted: its bare PNG carrying its recipe (jobs.recipe), signed with the operator's
    key (jobs.provenance) where the worker has one. Hashing weights and signing run off the event loop."""
    text = await asyncio.to_thread(_recipe, services, job, index, seed)
    data = with_text(plain, {recipe.RECIPE_KEY: text})
    if services.credentials is None:
        return data
    title = f"{job.kind}-{index}.png"
    return await asyncio.to_thread(provenance.sign_png, data, text, services.credentials, title)


def _recipe(services: WorkerServices, job: Job, index: int, seed: int) -> str:
    spec = job.spec
    cache_dir = services.engine.cache.cache_dir
    models = [
        model_identity(services.registry.get(spec[key]), cache_dir, services.digests)
        for key in ("model", "upscaler")
        if isinstance(spec.get(key), str) and spec[key] in services.registry.names()
    ]
    loras = []
    for name, weight in spec.get("loras") or []:
        try:
            digest = services.digests.of(services.engine.loras.path(name))
        except (ValueError, OSError):  # a LoRA gone since the job ran: recorded without a hash
            digest = ""
        loras.append({"name": name, "weight": weight, "sha256": digest})
    return recipe.build(job.kind, spec, index=index, seed=seed, models=models, loras=loras)


async def _stored_images(job: Job) -> list[StoredImage]:
    rows = await Image.filter(job=job).order_by("index")
    return [
        StoredImage(r.index, r.blob_key, r.width, r.height, r.seed, r.size_bytes, r.sha256, r.flagged)
        for r in rows
    ]


DELIVERY_RETRY_S = (1.0, 2.0, 4.0, 8.0, 16.0)  # pauses between tries of posting a job's results


async def _deliver(job: Job, replier: Replier, images: list[StoredImage]) -> None:
    """Post the results. A post that fails (a network error, a platform 5xx, a 429 beyond its own wait) is tried
    again after a pause, up to five times; the repliers skip the parts they already posted (jobs.delivery), so
    nothing is posted twice. When every try fails the user is told the images are ready and could not be posted,
    with a reference, and the failure is logged and counted."""
    for pause in (*DELIVERY_RETRY_S, None):
        try:
            await replier.result(job, images)
            break
        except Exception as exc:
            if pause is None:
                log.exception("job %s: posting the results failed; giving up", job.id)
                metrics.DELIVERIES_FAILED.labels(_platform(job)).inc()
                try:
                    await replier.failure(
                        job, f"The images are ready, but posting them here failed. Reference: {job.id}"
                    )
                except Exception:
                    log.exception("job %s: telling the user about the failed post failed too", job.id)
                break
            log.warning("job %s: posting the results failed (%r); trying again in %.0f s", job.id, exc, pause)
            await asyncio.sleep(pause)
    job.delivered_at = datetime.now(UTC)
    await job.save(update_fields=["delivered_at"])


def _platform(job: Job) -> str:
    return (job.reply_target or {}).get("platform", "cli")


async def _fail(job: Job, replier: Replier, message: str) -> dict:
    job.status, job.finished_at, job.error = JobStatus.FAILED, datetime.now(UTC), message
    await job.save(update_fields=["status", "finished_at", "error"])
    metrics.JOBS.labels(job.kind, job.model, "failed").inc()
    await replier.failure(job, message)
    job.delivered_at = datetime.now(UTC)  # told: a retry after a death before this line tells again
    await job.save(update_fields=["delivered_at"])
    return {"status": job.status.value, "error": message}


def _seconds_between(earlier: datetime, later: datetime) -> float:
    """Seconds from `earlier` to `later`; a naive time (as a database may return it) is taken as UTC."""
    earlier, later = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (earlier, later))
    return (later - earlier).total_seconds()


def _export_cache_stats(services: WorkerServices) -> None:
    cache = services.engine.cache
    metrics.MODEL_CACHE_HITS.set(cache.hits)
    metrics.MODEL_CACHE_MISSES.set(cache.misses)
    metrics.MODEL_LOAD_SECONDS.set(cache.load_seconds)
    metrics.MODEL_CACHE_EVICTIONS.set(cache.evictions)
