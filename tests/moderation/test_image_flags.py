"""The image classifier runs in the worker on every output whatever the model (issue 17, item 2): tiny SDXL and
Flux images flagged by the strict tiny classifier are stored flagged, the plain tiny ones are not, and the flag
reaches a replier (what Discord's and Slack's act on by the channel's policy: tests/discord and tests/slack
test_safety_policy) as the SD 1.5 checker's does."""

from __future__ import annotations

import pytest

from atelier.runtime import Runtime
from jobs.queue import enqueue
from jobs.replier import StoredImage, relay
from jobs.specs import ReplyTarget, imagine_spec
from storage.models import Image, Job, JobStatus

CLI = ReplyTarget(platform="cli")


class Results:
    """A replier that keeps the images of the result it is told (the `jobs.replier.Replier` protocol)."""

    images: list[StoredImage] | None = None

    async def queued(self, job, position, eta_s, *, lane="fast") -> None:
        pass

    async def progress(self, job, step, total, preview) -> None:
        pass

    async def result(self, job, images: list[StoredImage]) -> None:
        self.images = images

    async def failure(self, job, message: str) -> None:
        raise AssertionError(f"the job failed: {message}")


@pytest.mark.parametrize(
    ("model", "flagged"),
    [("tiny-sdxl-strict", True), ("tiny-flux-strict", True), ("tiny-sdxl", False), ("tiny-flux", False)],
)
async def test_the_worker_flags_sdxl_and_flux_outputs(
    runtime: Runtime, run_worker, model: str, flagged: bool
) -> None:
    spec = imagine_spec(runtime.registry, prompt="a fox", model=model, tiny=True, steps=2, count=2, hires=1)
    queued = await enqueue(
        runtime.redis,
        spec,
        request_id=f"flags:{model}",
        reply_target=CLI,
        queue_name=runtime.settings.queue_name,
    )
    await run_worker()
    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert await Image.filter(job=job).order_by("index").values_list("flagged", flat=True) == [
        flagged,
        flagged,
    ]
    told = Results()
    await relay(runtime.redis, job, told)
    assert told.images is not None and [i.flagged for i in told.images] == [flagged, flagged]
