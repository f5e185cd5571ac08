"""LoRA training jobs: admit a dataset, train on a worker of the training queue, store the LoRA for its tenant.

`request_training` checks everything a person can get wrong (name, trigger, model, dataset, a name already
taken) before anything is stored or charged, then stores the dataset zip as a blob, takes the name (a `training`
LoRA record) and enqueues a `train_lora` job on the training queue (ATELIER_TRAIN_QUEUE_NAME), so hours of
training never hold up image jobs unless one worker serves both queues (`atelier worker --queues images,train`;
it has one GPU thread, so there image jobs wait while a training run holds it).

The job goes through `jobs.lifecycle.run_job` like every other: its images are the sample images made with the
new LoRA, it is idempotent by job id, charged the GPU seconds it used (quotas settle) or refunded when it fails or
is cancelled. Cancelling stops it after the current step, like an image job.

Checkpoints (LoRA weights, optimiser state, step) are written every `checkpoint_every` steps and after the last
step into a per-job folder under the worker's training folder (`<data dir>/training/<job id>/`), and each is
copied to the blob store (`checkpoint_key`) before training goes on, so a retry after a worker crash resumes from
the last one on whichever worker takes it, on any machine. Before training, the blob is fetched into the local
folder unless the local checkpoint (this machine ran the job before) is as far along: a worker killed between
writing a checkpoint and storing it leaves its local one ahead. The blob and the folder are deleted once the job
has ended (succeeded, failed or cancelled) and not before, so a retry after the LoRA was stored but before the
job was marked succeeded resumes at the last step: it trains nothing again, only remakes the samples.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from arq.connections import ArqRedis
from tortoise.exceptions import IntegrityError

from engine.lora import LORA_NAME, LoraLibrary, TenantLoras
from engine.registry import Registry
from engine.training_config import CHECKPOINT_FILE, check_trainable, defaults_for
from jobs import events
from jobs.datasets import unpack_dataset
from jobs.lifecycle import JobCancelled, Produced, Progress, on_gpu, run_job
from jobs.queue import Enqueued, enqueue, job_id_for
from jobs.services import WorkerServices
from jobs.specs import ReplyTarget, TrainLora
from jobs.text import check_name
from quotas.tiers import Tiers
from storage.blobs import BlobNotFound, BlobStore
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Job, JobStatus, Tenant, User

log = logging.getLogger(__name__)

DEFAULT_TRAINING_DIR = Path(tempfile.gettempdir()) / "atelier-training"
MAX_TRIGGER_CHARS = 100
LOSS_EVERY_S = 1.0  # how often a training event (step, loss) goes to the job's stream at most


def weights_key(lora: LoraModel) -> str:
    return f"loras/{lora.tenant_id}/{lora.id}.safetensors"  # type: ignore[attr-defined]


def checkpoint_key(job_id: str) -> str:
    """The blob of a training job's latest checkpoint, which any worker resumes from."""
    return f"training/{job_id}/{CHECKPOINT_FILE}"


async def request_training(
    redis: ArqRedis,
    blobs: BlobStore,
    registry: Registry,
    *,
    tenant: Tenant,
    user: User | None,
    name: str,
    trigger: str,
    dataset_zip: bytes,
    request_id: str,
    reply_target: ReplyTarget,
    queue_name: str,
    tiers: Tiers | None = None,
    model: str | None = None,
    tiny: bool = False,
    steps: int | None = None,
    rank: int | None = None,
    learning_rate: float | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
) -> Enqueued:
    """Check, store and enqueue a training request once for `request_id`. ValueError (nothing stored, nothing
    charged) for a bad name, trigger, model or dataset, or a name this tenant already uses; QuotaRefused from
    admission (the name is given back)."""
    if not LORA_NAME.fullmatch(name):
        raise ValueError(
            f"LoRA name {name!r}: use 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    trigger = check_name("trigger word", trigger.strip())
    if not trigger or len(trigger) > MAX_TRIGGER_CHARS:
        raise ValueError(f"the trigger word must be 1 to {MAX_TRIGGER_CHARS} characters")
    preset = registry.resolve(model, role="txt2img", tiny=tiny)
    check_trainable(model or preset.name, preset.family)
    config = defaults_for(
        preset.family,
        resolution=max(preset.default_width, preset.default_height),
        steps=steps,
        rank=rank,
        learning_rate=learning_rate,
        alpha=None if rank is None else float(rank),
        checkpoint_every=checkpoint_every,
    )
    await asyncio.to_thread(_check_dataset, dataset_zip)  # DatasetError, a ValueError, names the problem
    job_id = job_id_for(request_id)
    existing = await LoraModel.get_or_none(tenant=tenant, name=name)
    if existing is not None and existing.job_id != job_id:
        if existing.status != LoraStatus.FAILED and not await _abandoned(existing):
            raise ValueError(
                f"the LoRA name {name!r} is already taken here ({existing.status.value}): choose another, "
                "or delete that LoRA first"
            )
        await delete_lora(blobs, existing)
        existing = None
    dataset_key = f"datasets/{job_id}.zip"
    await blobs.put(dataset_key, dataset_zip, "application/zip")
    lora = existing
    if lora is None:
        try:
            lora = await LoraModel.create(
                tenant=tenant,
                name=name,
                family=preset.family,
                base_model=preset.name,
                trigger=trigger,
                trained_by=user,
                steps=config.steps,
                job_id=job_id,
            )
        except IntegrityError:
            raise ValueError(f"the LoRA name {name!r} was just taken here: choose another") from None
    spec = TrainLora(
        lora_id=lora.id,
        name=name,
        trigger=trigger,
        dataset=dataset_key,
        model=preset.name,
        family=preset.family,
        steps=config.steps,
        rank=config.rank,
        alpha=config.alpha,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        resolution=config.resolution,
        checkpoint_every=config.checkpoint_every,
        seed=seed,
        sample_steps=preset.default_steps,
    )
    try:
        return await enqueue(
            redis,
            spec,  # type: ignore[arg-type]  # enqueue reads kind, model and model_dump, as every spec has
            request_id=request_id,
            reply_target=reply_target,
            queue_name=queue_name,
            tenant=tenant,
            user=user,
            tiers=tiers,
        )
    except BaseException:
        if not await Job.exists(id=job_id):
            await lora.delete()
            await blobs.delete(dataset_key)
        raise


async def _abandoned(lora: LoraModel) -> bool:
    """Whether a `training` record's job ended without training it (cancelled or failed while queued)."""
    if lora.status != LoraStatus.TRAINING:
        return False
    job = await Job.get_or_none(id=lora.job_id)
    return job is None or job.status in (JobStatus.FAILED, JobStatus.CANCELLED)


async def tenant_loras(tenant: Tenant, library: LoraLibrary) -> TenantLoras:
    """The tenant's view of LoRAs for validating requests: its ready trained LoRAs over the shared folder."""
    rows = await LoraModel.filter(tenant=tenant, status=LoraStatus.READY).values_list("name", "id")
    return TenantLoras(library, dict(rows))


async def list_loras(tenant: Tenant) -> list[LoraModel]:
    return await LoraModel.filter(tenant=tenant).order_by("name")


async def delete_lora(blobs: BlobStore, lora: LoraModel) -> None:
    """Remove a LoRA record and its weights, samples and training checkpoint from the blob store (a training run
    still going fails when it finds its record gone). The checkpoint is there when arq gave up on the job."""
    checkpoint = checkpoint_key(lora.job_id) if lora.job_id else None
    for key in [lora.weights_key, *lora.sample_keys, checkpoint]:
        if key:
            await blobs.delete(key)
    await lora.delete()


async def train_lora(ctx: dict, job_id: str) -> dict:
    """The arq job: train, store the LoRA, and return its samples as the job's images (see the module doc)."""
    work_dir = Path(ctx.get("training_dir") or DEFAULT_TRAINING_DIR) / job_id
    result = await run_job(ctx, job_id, partial(_train, work_dir=work_dir))
    if result.get("status") in ("succeeded", "failed", "cancelled"):
        await ctx["services"].blobs.delete(checkpoint_key(job_id))
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


async def _train(services: WorkerServices, job: Job, progress: Progress, *, work_dir: Path) -> list[Produced]:
    spec = TrainLora.model_validate(job.spec)
    lora = await LoraModel.get_or_none(id=spec.lora_id)
    if lora is None:
        raise ValueError(f"the LoRA {spec.name!r} was deleted before its training ran")
    try:
        produced = await _run_training(services, job, spec, lora, progress, work_dir)
    except asyncio.CancelledError:
        raise  # a worker shutdown: the job is retried and resumes
    except JobCancelled:
        await _mark_failed(lora, "cancelled")
        raise
    except Exception as exc:
        await _mark_failed(lora, str(exc) if isinstance(exc, ValueError) else "training failed")
        raise
    return produced


def _check_dataset(dataset_zip: bytes) -> None:
    """Unpack and check a dataset into a scratch folder, then remove it: blocking work, run off the event loop
    (on a bot's, 60,000 members or 200 decodes would stall every other command)."""
    with tempfile.TemporaryDirectory(prefix="atelier-dataset-") as scratch:
        unpack_dataset(dataset_zip, Path(scratch) / "dataset")


async def _run_training(
    services: WorkerServices, job: Job, spec: TrainLora, lora: LoraModel, progress: Progress, work_dir: Path
) -> list[Produced]:
    from engine.loading import load_pipeline
    from engine.training import TrainingConfig, read_dataset, train_lora

    checkpoint_dir = work_dir / "checkpoints"
    await _fetch_checkpoint(services.blobs, job.id, checkpoint_dir / CHECKPOINT_FILE)
    dataset = work_dir / "dataset"
    shutil.rmtree(dataset, ignore_errors=True)
    await asyncio.to_thread(unpack_dataset, await services.blobs.get(spec.dataset), dataset)
    config = TrainingConfig(
        rank=spec.rank,
        alpha=spec.alpha,
        steps=spec.steps,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        resolution=spec.resolution,
        checkpoint_every=spec.checkpoint_every,
        seed=spec.seed,
        sample_count=spec.count,
        sample_steps=spec.sample_steps,
    )
    preset = services.registry.get(spec.model)
    engine = services.engine
    report = _loss_reporter(services, job, progress)
    store_checkpoint = _checkpoint_uploader(services.blobs, job.id)
    output = work_dir / f"{spec.name}.safetensors"

    def blocking():
        pipeline = load_pipeline(preset, cache_dir=engine.cache.cache_dir, dtype=engine.dtype)
        pipeline.to(engine.device)
        examples = read_dataset(dataset, spec.trigger)
        return train_lora(
            pipeline,
            spec.family,
            examples,
            config,
            output=output,
            checkpoint_dir=checkpoint_dir,
            trigger=spec.trigger,
            progress=report,
            on_checkpoint=store_checkpoint,
        )

    result = await on_gpu(services, blocking)
    if result.resumed_at:
        log.info("job %s resumed training at step %d", job.id, result.resumed_at)
        await events.publish(services.redis, job.id, "resumed", step=result.resumed_at)
    data = result.lora_path.read_bytes()
    key = weights_key(lora)
    await services.blobs.put(key, data, "application/octet-stream")
    if engine.loras.folder is not None:
        cached = engine.loras.trained_path(lora.id)
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.lora_path, cached)
    updated = await LoraModel.filter(id=lora.id).update(
        status=LoraStatus.READY,
        weights_key=key,
        # run_job stores the job's images under these keys (jobs.lifecycle._store).
        sample_keys=[f"images/{job.id}/{i}.png" for i in range(len(result.samples))],
        steps=spec.steps,
        error=None,
        finished_at=datetime.now(UTC),
    )
    if not updated:
        await services.blobs.delete(key)
        raise ValueError(f"the LoRA {spec.name!r} was deleted while it trained")
    return [Produced(image, spec.seed + i) for i, image in enumerate(result.samples)]


async def _fetch_checkpoint(blobs: BlobStore, job_id: str, checkpoint: Path) -> None:
    """Put the job's stored checkpoint at `checkpoint` for `train_lora` to resume from, unless the local one
    there is as far along (see the module doc); nothing when none is stored."""
    try:
        data = await blobs.get(checkpoint_key(job_id))
    except BlobNotFound:
        return
    await asyncio.to_thread(_keep_further, data, checkpoint)


def _keep_further(data: bytes, checkpoint: Path) -> None:
    from engine.training import checkpoint_step

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    fetched = checkpoint.with_name(f".fetched-{checkpoint.name}")
    fetched.write_bytes(data)
    if checkpoint.is_file() and checkpoint_step(checkpoint) >= checkpoint_step(fetched):
        fetched.unlink()
    else:
        fetched.replace(checkpoint)


def _checkpoint_uploader(blobs: BlobStore, job_id: str) -> Callable[[Path], None]:
    """The engine's checkpoint callback: copy each checkpoint to the blob store, holding the GPU thread until it
    is stored, so a worker killed after the step that wrote it resumes there."""
    loop = asyncio.get_running_loop()
    key = checkpoint_key(job_id)

    def upload(checkpoint: Path) -> None:
        stored = asyncio.run_coroutine_threadsafe(blobs.put(key, checkpoint.read_bytes()), loop)
        while True:
            try:
                return stored.result(timeout=1.0)
            except TimeoutError:
                # A worker shutting down may close its loop before running the upload: do not wait forever
                # (the process would hang at exit joining this thread).
                if loop.is_closed():
                    stored.cancel()
                    raise RuntimeError("the worker stopped before the checkpoint was stored") from None

    return upload


def _loss_reporter(services: WorkerServices, job: Job, progress: Progress):
    """The engine's (step, total, loss) callback: the job's progress (which raises once a cancel is asked), and
    at most every LOSS_EVERY_S a `training` event with the loss on the job's stream."""
    loop = asyncio.get_running_loop()
    last = {"at": 0.0}

    def report(step: int, total: int, loss: float) -> None:
        progress(step, total, None)
        now = loop.time()
        if now - last["at"] >= LOSS_EVERY_S or step == total:
            last["at"] = now
            publish = events.publish(services.redis, job.id, "training", step=step, total=total, loss=loss)
            asyncio.run_coroutine_threadsafe(publish, loop)

    return report


async def _mark_failed(lora: LoraModel, message: str) -> None:
    await LoraModel.filter(id=lora.id, status=LoraStatus.TRAINING).update(
        status=LoraStatus.FAILED, error=message, finished_at=datetime.now(UTC)
    )
