"""The training job on the real services: a tenant's LoRA is trained on the training queue, stored, usable by
that tenant only; bad requests are refused with a clear message and nothing charged."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from engine.lora import LoraLibrary, UnknownLoraError, scoped_name
from jobs.queue import enqueue
from jobs.specs import Imagine, ReplyTarget
from jobs.training import checkpoint_key, request_training, tenant_loras
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Image as ImageRow
from storage.models import Job, JobStatus, get_or_create_tenant, get_or_create_user
from storage.quota_models import QuotaCounter, QuotaReservation, ReservationState
from tests.training.conftest import png, zip_of


async def _train(runtime, tenant, data: bytes, name: str = "ink", **options):
    return await request_training(
        runtime.redis,
        runtime.blobs,
        runtime.registry,
        tenant=tenant,
        user=await get_or_create_user(tenant, "admin"),
        name=name,
        trigger="zq",
        dataset_zip=data,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.train_queue_name,
        tiny=True,
        **{"steps": 8, "learning_rate": 5e-3, "checkpoint_every": 4} | options,
    )


async def _imagine(runtime, run_worker, tenant, loras) -> np.ndarray | str:
    spec = Imagine(
        prompt="zq", model="tiny", width=64, height=64, steps=3, guidance=7.5, seed=5, count=1, loras=loras
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
    job = await Job.get(id=queued.job_id)
    if job.status != JobStatus.SUCCEEDED:
        return job.error or job.status.value
    row = await ImageRow.get(job=job, index=0)
    return np.asarray(Image.open(io.BytesIO(await runtime.blobs.get(row.blob_key)))).astype(int)


async def test_a_trained_lora_is_used_by_its_tenant_only(runtime, run_worker, dataset_zip: bytes) -> None:
    tenant_a = await get_or_create_tenant("discord", "guild-a")
    tenant_b = await get_or_create_tenant("discord", "guild-b")
    queued = await _train(runtime, tenant_a, dataset_zip)
    await run_worker(train=True)

    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.gpu_seconds > 0
    reservation = await QuotaReservation.get(job_id=job.id)
    assert reservation.state == ReservationState.SETTLED  # charged what it used
    lora = await LoraModel.get(tenant=tenant_a, name="ink")
    assert lora.status == LoraStatus.READY and lora.steps == 8 and lora.base_model == "tiny"
    assert lora.sample_keys == [f"images/{job.id}/0.png", f"images/{job.id}/1.png"]
    assert await runtime.blobs.exists(lora.weights_key)
    assert not await runtime.blobs.exists(checkpoint_key(job.id))  # deleted once the job is done

    library = LoraLibrary(runtime.settings.lora_dir)
    view_a = await tenant_loras(tenant_a, library)
    assert view_a.names() == ["ink"] and view_a.spec_name("ink") == scoped_name("ink", lora.id)
    library.trained_path(lora.id).unlink()  # a worker that has never seen it: fetched from the blob store
    base = await _imagine(runtime, run_worker, tenant_a, [])
    full = await _imagine(runtime, run_worker, tenant_a, [(view_a.spec_name("ink"), 1.0)])
    zero = await _imagine(runtime, run_worker, tenant_a, [(view_a.spec_name("ink"), 0.0)])
    assert isinstance(full, np.ndarray) and np.abs(full - base).max() > 0
    assert np.array_equal(zero, base)

    view_b = await tenant_loras(tenant_b, library)
    with pytest.raises(UnknownLoraError, match="unknown LoRA 'ink'"):
        view_b.path("ink")
    # A spec forged with tenant A's scoped name fails for tenant B: its worker does not fetch another's LoRA.
    library.trained_path(lora.id).unlink()
    forged = await _imagine(runtime, run_worker, tenant_b, [(scoped_name("ink", lora.id), 1.0)])
    assert forged == "unknown LoRA 'ink': this server has no LoRA of that name"


async def _charged(tenant) -> int:
    return (
        await QuotaCounter.filter(tenant=tenant).count()
        + await QuotaReservation.filter(tenant=tenant).count()
    )


async def test_bad_requests_are_refused_and_nothing_is_charged(
    runtime, run_worker, dataset_zip: bytes
) -> None:
    tenant = await get_or_create_tenant("discord", "guild-bad")
    with pytest.raises(ValueError, match=r"model 'flux-schnell' \(flux\) cannot be trained"):
        await _train(runtime, tenant, dataset_zip, model="flux-schnell")
    with pytest.raises(ValueError, match=r"between 3 and 200 images \(got 2\)"):
        await _train(runtime, tenant, zip_of({"a.png": png(1), "b.png": png(2)}))
    with pytest.raises(ValueError, match="points outside"):
        await _train(
            runtime, tenant, zip_of({"../evil.png": png(1), **{f"{i}.png": png(i) for i in range(3)}})
        )
    with pytest.raises(ValueError, match="LoRA name 'a b'"):
        await _train(runtime, tenant, dataset_zip, name="a b")
    assert await _charged(tenant) == 0 and not await LoraModel.exists(tenant=tenant)

    await _train(runtime, tenant, dataset_zip, name="taken")
    charged = await _charged(tenant)
    with pytest.raises(ValueError, match=r"the LoRA name 'taken' is already taken here \(training\)"):
        await _train(runtime, tenant, dataset_zip, name="taken")
    assert await _charged(tenant) == charged and await Job.filter(tenant=tenant).count() == 1
