"""The worker checks a tenant LoRA's owner on every job (issue 11, item 3): once a LoRA's file is in the worker's
folder, fetched for its own tenant's job, a job of another tenant naming it (`ink@<id>`, learnt or guessed) still
fails as an unknown LoRA, refunded, with no image. Real Redis, PostgreSQL, blob folder and a burst worker on the
tiny model; the LoRA is trained for real."""

from __future__ import annotations

import uuid

from engine.lora import LoraLibrary, scoped_name
from jobs.queue import enqueue
from jobs.specs import Imagine, ReplyTarget
from jobs.training import request_training
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Image, Job, JobStatus, get_or_create_tenant, get_or_create_user
from storage.quota_models import QuotaReservation, ReservationState


async def _imagine(runtime, run_worker, tenant, loras: list[tuple[str, float]]) -> Job:
    spec = Imagine(
        prompt="zq", model="tiny", width=64, height=64, steps=2, guidance=7.5, seed=5, count=1, loras=loras
    )
    queued = await enqueue(
        runtime.redis,
        spec,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.queue_name,
        tenant=tenant,
    )
    await run_worker()
    return await Job.get(id=queued.job_id)


async def test_a_cached_lora_of_another_tenant_is_refused_by_the_worker(
    runtime, run_worker, dataset_zip: bytes
) -> None:
    owner = await get_or_create_tenant("slack", f"TLORA{uuid.uuid4().hex[:6]}")
    other = await get_or_create_tenant("slack", f"TLORB{uuid.uuid4().hex[:6]}")
    await request_training(
        runtime.redis,
        runtime.blobs,
        runtime.registry,
        tenant=owner,
        user=await get_or_create_user(owner, "admin"),
        name="ink",
        trigger="zq",
        dataset_zip=dataset_zip,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.train_queue_name,
        tiny=True,
        steps=4,
        learning_rate=5e-3,
        checkpoint_every=4,
    )
    await run_worker(train=True)
    lora = await LoraModel.get(tenant=owner, name="ink")
    assert lora.status == LoraStatus.READY
    name = scoped_name("ink", lora.id)

    own = await _imagine(runtime, run_worker, owner, [(name, 1.0)])
    assert own.status == JobStatus.SUCCEEDED, own.error
    cached = LoraLibrary(runtime.settings.lora_dir).trained_path(lora.id)
    assert cached.is_file()  # in the worker's folder now, for any later job

    forged = await _imagine(runtime, run_worker, other, [(name, 1.0)])
    assert forged.status == JobStatus.FAILED
    assert forged.error == "unknown LoRA 'ink': this server has no LoRA of that name"
    assert not await Image.filter(job_id=forged.id).exists()
    reservation = await QuotaReservation.get(job_id=forged.id)
    assert reservation.state == ReservationState.REFUNDED
    assert cached.is_file()  # the owner's file stays, and its jobs go on using it
    again = await _imagine(runtime, run_worker, owner, [(name, 1.0)])
    assert again.status == JobStatus.SUCCEEDED, again.error
