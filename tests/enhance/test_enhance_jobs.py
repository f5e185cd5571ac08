"""Upscale and enhance jobs through a real worker on the real services, and `imagine` with face restoration;
plus the spec builders that validate a request before anything is enqueued."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from enhance_support import astronaut, faceless, pixels
from PIL import Image as PILImage

from atelier.runtime import Runtime
from engine.registry import Registry
from jobs import events
from jobs.inputs import store_input
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, enhance_spec, imagine_spec, upscale_spec
from storage.models import Image, Job, JobStatus


async def _run(runtime: Runtime, run_worker, spec) -> tuple[Job, list[tuple[str, dict]]]:
    queued = await enqueue(
        runtime.redis,
        spec,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.queue_name,
    )
    await run_worker()
    job = await Job.get(id=queued.job_id)
    seen = [item async for item in events.follow(runtime.redis, job.id, block_ms=100)]
    return job, seen


async def _output(runtime: Runtime, job: Job) -> PILImage.Image:
    [row] = await Image.filter(job=job)
    image = PILImage.open(io.BytesIO(await runtime.blobs.get(row.blob_key)))
    assert (row.width, row.height) == image.size
    return image


@pytest.mark.parametrize("scale", [4, 2])
async def test_an_upscale_job_stores_an_image_scale_times_larger(
    runtime: Runtime, run_worker, registry: Registry, scale: int
) -> None:
    image = astronaut(80).crop((0, 0, 80, 64))
    spec = upscale_spec(registry, image=image, scale=scale, tiny=True)
    spec = spec.model_copy(update={"image": await store_input(runtime.blobs, image)})
    job, seen = await _run(runtime, run_worker, spec)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.kind, job.model) == ("upscale", f"tiny-upscale-x{scale}")
    assert (await _output(runtime, job)).size == (80 * scale, 64 * scale)
    assert seen[-1][0] == "result"


async def test_an_enhance_job_without_a_face_returns_the_image_unchanged_and_says_so(
    runtime: Runtime, run_worker, registry: Registry
) -> None:
    image = faceless()
    spec = enhance_spec(registry, image=image, tiny=True)
    spec = spec.model_copy(update={"image": await store_input(runtime.blobs, image)})
    job, seen = await _run(runtime, run_worker, spec)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert np.array_equal(pixels(await _output(runtime, job)), pixels(image))
    assert ("note", {"message": "no face found", "faces": 0}) in seen


async def test_imagine_with_enhance_faces_looks_for_faces_after_generating(
    runtime: Runtime, run_worker, registry: Registry
) -> None:
    spec = imagine_spec(registry, prompt="a portrait", seed=3, tiny=True, enhance_faces=True)
    assert spec.enhance_faces
    job, seen = await _run(runtime, run_worker, spec)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (await _output(runtime, job)).size == (64, 64)
    # A tiny model paints no face: the restorer had nothing to do, and the job says so.
    assert ("note", {"message": "no face found", "faces": 0}) in seen
    plain, plain_events = await _run(runtime, run_worker, spec.model_copy(update={"enhance_faces": False}))
    assert not any(event == "note" for event, _ in plain_events)
    assert np.array_equal(pixels(await _output(runtime, plain)), pixels(await _output(runtime, job)))


def test_specs_carry_the_input_size_and_the_resolved_models(registry: Registry) -> None:
    image = faceless(100, 70)
    spec = enhance_spec(registry, image=image, model="codeformer", fidelity=0.8, upscale=2, tiny=True)
    assert (spec.model, spec.fidelity, spec.upscaler, spec.scale) == (
        "tiny-codeformer",
        0.8,
        "tiny-upscale-x2",
        2,
    )
    assert (spec.width, spec.height) == (100, 70)
    real = upscale_spec(registry, image=image)
    assert (real.model, real.scale) == ("realesrgan-x4", 4)


@pytest.mark.parametrize(
    ("size", "kwargs", "message"),
    [
        (
            (2100, 64),
            {"scale": 4},
            "the image is 2100x64: width 2100 exceeds tiny-upscale-x4's limit of 2048",
        ),
        ((1100, 1000), {"scale": 4}, "1100000 pixels, more than tiny-upscale-x4's limit"),
        ((32, 64), {"scale": 2}, "width 32 is below the minimum of 64"),
        ((64, 64), {"scale": 3}, "scale must be 2 or 4 (got 3)"),
        ((64, 64), {"model": "tiny-gfpgan"}, "unknown upscale model 'tiny-gfpgan'"),
    ],
)
def test_an_upscale_the_model_cannot_take_is_refused_before_enqueueing(
    registry: Registry, size: tuple[int, int], kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        upscale_spec(registry, image=PILImage.new("RGB", size), tiny=True, **kwargs)
    assert message in str(error.value)


def test_an_enhance_the_model_cannot_take_is_refused_before_enqueueing(registry: Registry) -> None:
    image = PILImage.new("RGB", (64, 64))
    with pytest.raises(ValueError, match=r"fidelity applies to CodeFormer only; gfpgan-1\.4"):
        enhance_spec(registry, image=image, model="gfpgan-1.4", fidelity=0.3, tiny=True)
    with pytest.raises(ValueError, match="unknown face model 'nope'"):
        enhance_spec(registry, image=image, model="nope")
    with pytest.raises(ValueError, match="limit of 2048"):
        enhance_spec(registry, image=PILImage.new("RGB", (3000, 64)), upscale=4)
