"""New jobs made from one image: the U (upscale ×4), V (variations) and Enhance faces buttons and reactions act
on an image Atelier made; the message shortcuts on an image someone posted.

A result image is read back from the blob store by (job, index), so buttons and reactions work however old the
message is. The job must be the asker's workspace's (`source_job`), and an image the safety filter withheld is
never acted on: it had no button, so a click naming it is refused. Specs are built with the same builders as the CLI (`upscale_spec`, `vary_spec`, `enhance_spec`):
an image the models' limits refuse is a CommandError with the reason, and nothing is enqueued.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets

from PIL import Image as PILImage

from bots.commands import CommandError
from bots.slack import safety
from bots.slack.services import SlackServices
from bots.slack.workspace import Workspace
from jobs.ownership import ForeignJob
from jobs.retention import expired_words
from jobs.specs import MAX_SEED, Enhance, Upscale, Vary, enhance_spec, upscale_spec, vary_spec
from storage.models import Image, Job

log = logging.getLogger(__name__)

ACTIONS = ("upscale", "variations", "faces")
TITLES = {"upscale": "Upscale", "variations": "Variations", "faces": "Enhanced faces"}
FOREIGN = "That button belongs to another workspace."
GONE = "That image is gone; it can no longer be used."
WITHHELD = "That image was withheld by this workspace's safety filter; it can't be used."


async def source_job(workspace: Workspace, job_id: str, *, foreign: str = FOREIGN, gone: str = GONE) -> Job:
    """The job a button or reaction names, if it is `workspace`'s: else a CommandError saying `foreign` (another
    workspace's job) or `gone` (no such job)."""
    try:
        job = await workspace.job(job_id)
    except ForeignJob:
        log.warning("slack: team %s acted on job %s of another workspace: refused", workspace.team_id, job_id)
        raise CommandError(foreign) from None
    if job is None:
        raise CommandError(gone)
    return job


async def result_image(services: SlackServices, source: Job, index: int) -> tuple[PILImage.Image, str]:
    """Image `index` of `source`'s results decoded, and its blob key; a CommandError when there is none or the
    safety filter withheld it."""
    row = await Image.get_or_none(job_id=source.id, index=index)
    if row is None:
        raise CommandError(expired_words(source) or GONE)
    if (
        row.flagged
        and await safety.withholds_flagged(source.tenant_id, safety.job_channel(source))  # type: ignore[attr-defined]
        and not await safety.approved(row.id)
    ):
        raise CommandError(WITHHELD)
    data = await services.blobs.get(row.blob_key)
    return await asyncio.to_thread(_decode, data), row.blob_key


def derived_spec(
    services: SlackServices,
    action: str,
    image: PILImage.Image,
    key: str,
    source_spec: dict | None = None,
    parent: str | None = None,
) -> Upscale | Enhance | Vary:
    """The spec of `action` on `image` (stored under `key`). Variations reuse the source job's prompt, model,
    steps and count with a new seed; without a source (an image someone posted) they are refused."""
    spec = _derived_spec(services, action, image, key, source_spec)
    return spec.model_copy(update={"parent": parent})  # the job whose image this is (None: someone's upload)


def _derived_spec(
    services: SlackServices, action: str, image: PILImage.Image, key: str, source_spec: dict | None
) -> Upscale | Enhance | Vary:
    registry, tiny = services.registry, services.tiny_models
    try:
        if action == "upscale":
            return upscale_spec(registry, image=image, scale=4, tiny=tiny, image_key=key)
        if action == "faces":
            return enhance_spec(registry, image=image, tiny=tiny, image_key=key)
        if action != "variations":
            raise ValueError(f"unknown action {action!r}")
        # The source's prompt and settings when it has a text-to-image model; an upscaled image varies alone.
        was = source_spec if source_spec and source_spec.get("kind", "imagine") in ("imagine", "vary") else {}
        return vary_spec(
            registry,
            image=image,
            prompt=was.get("prompt", ""),
            negative=was.get("negative", ""),
            model=was.get("model"),
            steps=was.get("steps"),
            guidance=was.get("guidance"),
            count=was.get("count"),
            tiny=tiny,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            image_key=key,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _decode(data: bytes) -> PILImage.Image:
    with PILImage.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")
