"""Before an image job runs: make sure every tenant LoRA its spec names is the job's tenant's own, and fetch those
files from the blob store into the worker's LoRA folder (`engine.lora.LoraLibrary.trained_path`), so the engine
can apply them.

Ownership is checked on every job, whether the file is already in the folder or not: a file fetched for one
tenant's job stays there for later jobs, and a spec naming it (`ink@12`) can come from anyone who learned the
name. `fetch_tenant_loras` (before the job starts) fetches owned files only; `check_tenant_loras` (inside the job's
lifecycle, so the job fails and is refunded) refuses a job that names any other, as an unknown LoRA.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Awaitable, Callable

from engine.lora import UnknownLoraError, split_scoped
from jobs.services import WorkerServices
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Job

log = logging.getLogger(__name__)


async def _owned(job: Job, base: str, lora_id: int) -> LoraModel | None:
    """The ready LoRA record `lora_id` named `base` if it is the job's tenant's; else None."""
    if job.tenant_id is None:  # type: ignore[attr-defined]
        return None
    return await LoraModel.get_or_none(
        id=lora_id,
        name=base,
        tenant_id=job.tenant_id,  # type: ignore[attr-defined]
        status=LoraStatus.READY,
    )


async def check_tenant_loras(job: Job) -> None:
    """Raise UnknownLoraError for a tenant LoRA in the job's spec that is not its tenant's own (ready) LoRA."""
    for name, _weight in job.spec.get("loras") or []:
        base, lora_id = split_scoped(name)
        if lora_id is not None and await _owned(job, base, lora_id) is None:
            log.warning("job %s names LoRA %s, which is not its tenant's: refused", job.id, name)
            raise UnknownLoraError(f"unknown LoRA {base!r}: this server has no LoRA of that name")


async def fetch_tenant_loras(services: WorkerServices, job: Job) -> int:
    """Fetch the job's tenant's own LoRAs its spec needs and the folder lacks; returns how many were fetched."""
    library = services.engine.loras
    fetched = 0
    for name, _weight in job.spec.get("loras") or []:
        base, lora_id = split_scoped(name)
        if lora_id is None or library.folder is None:
            continue
        lora = await _owned(job, base, lora_id)
        if lora is None or not lora.weights_key:
            continue  # not this tenant's: `check_tenant_loras` fails the job, cached file or not
        target = library.trained_path(lora_id)
        if target.is_file():
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
