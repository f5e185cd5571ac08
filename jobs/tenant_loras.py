"""Before an image job runs: fetch the tenant's own LoRAs its spec names from the blob store into the worker's
LoRA folder (`engine.lora.LoraLibrary.trained_path`), so the engine can apply them.

Only LoRAs whose record belongs to the job's tenant and is ready are fetched; any other scoped name stays
absent, and the engine then refuses it as an unknown LoRA inside the job's lifecycle (failed and refunded).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable

from engine.lora import split_scoped
from jobs.services import WorkerServices
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Job


async def fetch_tenant_loras(services: WorkerServices, job: Job) -> int:
    """Fetch what the job's spec needs and is not cached yet; returns how many files were fetched."""
    library = services.engine.loras
    fetched = 0
    for name, _weight in job.spec.get("loras") or []:
        base, lora_id = split_scoped(name)
        if lora_id is None or library.folder is None:
            continue
        target = library.trained_path(lora_id)
        if target.is_file():
            continue
        lora = await LoraModel.get_or_none(
            id=lora_id,
            name=base,
            tenant_id=job.tenant_id,
            status=LoraStatus.READY,  # type: ignore[attr-defined]
        )
        if lora is None or job.tenant_id is None or not lora.weights_key:  # type: ignore[attr-defined]
            continue
        data = await services.blobs.get(lora.weights_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
        fetched += 1
    return fetched


def fetching_tenant_loras(job_function: Callable[[dict, str], Awaitable[dict]]):
    """Wrap an arq job function so the tenant's LoRAs its spec names are fetched before it runs."""

    async def run(ctx: dict, job_id: str) -> dict:
        job = await Job.get_or_none(id=job_id)
        if job is not None:
            await fetch_tenant_loras(ctx["services"], job)
        return await job_function(ctx, job_id)

    run.__name__ = run.__qualname__ = getattr(job_function, "__name__", "job")
    run.__doc__ = job_function.__doc__
    return run
