"""/describe as a job: the `Describe` spec (a stored image, the captioner and the interrogator) and the
`describe` job function, which writes the four prompts onto the job's spec (`prompts`) and makes no images.
Front-ends read them from the job when its result arrives (the CLI prints them, the chats post them with a
button each that runs /imagine with that prompt)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from engine.registry import Registry
from jobs.inputs import load_input
from jobs.lifecycle import Produced, Progress, on_gpu, run_job
from jobs.services import WorkerServices
from storage.models import Job

if TYPE_CHECKING:
    from PIL import Image as PILImage


class Describe(BaseModel):
    kind: Literal["describe"] = "describe"
    image: str  # blob key
    sha256: str = ""  # of the image's RGB pixels
    model: str  # the captioner
    interrogator: str
    prompts: list[str] = Field(default_factory=list)  # written by the worker


def describe_spec(
    registry: Registry, *, image: PILImage.Image, tiny: bool = False, image_key: str = ""
) -> Describe:
    """A `Describe` spec for the decoded image with the default captioner and interrogator."""
    from engine.guided_requests import pixel_sha256

    captioner = registry.resolve(None, role="captioner", tiny=tiny)
    interrogator = registry.resolve(None, role="interrogator", tiny=tiny)
    return Describe(
        image=image_key, sha256=pixel_sha256(image), model=captioner.name, interrogator=interrogator.name
    )


async def describe(ctx: dict, job_id: str) -> dict:
    """Four prompts for a stored image."""
    return await run_job(ctx, job_id, _describe)


async def _describe(services: WorkerServices, job: Job, progress: Progress) -> list[Produced]:
    from engine import describe as engine_describe

    spec = Describe.model_validate(job.spec)
    image = await load_input(services.blobs, spec.image)
    captioner, interrogator = services.registry.get(spec.model), services.registry.get(spec.interrogator)
    prompts = await on_gpu(
        services, engine_describe.describe, services.engine.cache, captioner, interrogator, image
    )
    progress(1, 1, None)
    job.spec = {**job.spec, "prompts": prompts}
    await job.save(update_fields=["spec"])
    return []
