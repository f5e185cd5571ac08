"""The safety filter in the API: an image the model's safety checker flagged (or made from a flagged one) is
withheld while the tenant's `safety` preference is on (the default; `/atelier safety off` in chat or
`atelier admin safety` turns it off), as Slack withholds it: an API has no age-restricted channel to show it in.
A withheld image is listed in its job with `"withheld": true`, and `GET /v1/images/{id}` answers 403
`image_withheld` instead of its bytes. With the filter off, flagged images are served like any other."""

from __future__ import annotations

from pathlib import PurePosixPath

from storage.models import Image, Job, Tenant
from storage.preferences import preferences_of

INPUTS = "inputs/"  # jobs.inputs.store_input's keys: inputs/<sha256 of the PNG>.png


async def filter_on(tenant_id: int | None) -> bool:
    """Whether the tenant withholds flagged images (a job without a tenant does)."""
    tenant = None if tenant_id is None else await Tenant.get_or_none(id=tenant_id)
    return tenant is None or (await preferences_of(tenant)).safety


async def source_flagged(spec: dict) -> bool:
    """Whether the job's input image is a flagged result, by key or by the same pixels (inputs are stored under
    the sha256 of their PNG, made as results' are), so an upscale cannot bring a withheld image out."""
    key = spec.get("image")
    if not key:
        return False
    if key.startswith(INPUTS):
        return await Image.filter(sha256=PurePosixPath(key).stem, flagged=True).exists()
    return await Image.filter(blob_key=key, flagged=True).exists()


async def withheld_images(job: Job, images: list[Image]) -> set[int]:
    """The ids of `images` (of `job`) that the filter withholds now."""
    from_flagged = await source_flagged(job.spec)
    candidates = {image.id for image in images if image.flagged or from_flagged}
    if not candidates or not await filter_on(job.tenant_id):  # type: ignore[attr-defined]
        return set()
    return candidates
