"""One image request through the whole path: enqueue → arq on Redis → worker → engine → blobs + database."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image as PILImage

from atelier.runtime import Runtime
from engine.output import png_bytes
from jobs import events
from jobs.queue import enqueue, job_id_for
from jobs.specs import ReplyTarget, imagine_spec
from storage.models import Image, Job, JobStatus
from tests.support import replayed_content

CLI = ReplyTarget(platform="cli")


async def _imagine(runtime: Runtime, request_id: str, **options: object) -> str:
    options = {"prompt": "a red fox", "seed": 7, **options}
    spec = imagine_spec(runtime.registry, tiny=True, **options)
    queued = await enqueue(
        runtime.redis, spec, request_id=request_id, reply_target=CLI, queue_name=runtime.settings.queue_name
    )
    return queued.job_id


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-flux"])
async def test_each_tiny_family_makes_images_through_the_worker(
    runtime: Runtime, run_worker, model: str
) -> None:
    job_id = await _imagine(runtime, f"test:{model}", model=model, size="64x96", count=2, steps=3)
    await run_worker()

    job = await Job.get(id=job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.model == model and job.attempts == 1 and job.gpu_seconds > 0
    assert job.started_at is not None and job.finished_at is not None and job.delivered_at is not None
    images = await Image.filter(job=job).order_by("index")
    assert [(i.index, i.seed, i.width, i.height) for i in images] == [(0, 7, 64, 96), (1, 8, 64, 96)]
    for image in images:
        data = await runtime.blobs.get(image.blob_key)
        assert len(data) == image.size_bytes
        decoded = PILImage.open(io.BytesIO(data))
        assert decoded.size == (64, 96)
        assert hashlib.sha256(png_bytes(decoded)).hexdigest() == image.sha256  # of the pixels, not the file
    # The two seeds give two different pictures.
    assert images[0].sha256 != images[1].sha256


async def test_same_prompt_model_and_seed_give_identical_pixels(runtime: Runtime, run_worker) -> None:
    first = await _imagine(runtime, "test:first")
    second = await _imagine(runtime, "test:second")
    other_seed = await _imagine(runtime, "test:third", seed=8)
    # Each alone: a batch's matrix products round differently, a few levels of 255 (tests/lora_batch), and
    # which waiting jobs a batching worker groups depends on timing.
    await run_worker(max_batch=1)
    # Each stored file carries its own C2PA signature (jobs.provenance): the pixels are what repeat.
    images = [(await _stored(runtime, j))[0][1] for j in (first, second, other_seed)]
    assert images[0] == images[1]
    assert images[2] != images[0]


async def test_a_redelivered_request_enqueues_once_but_equal_requests_are_two_jobs(runtime: Runtime) -> None:
    a1 = await _imagine(runtime, "discord:interaction:1")
    a2 = await _imagine(runtime, "discord:interaction:1")
    b = await _imagine(runtime, "discord:interaction:2")
    assert a1 == a2 == job_id_for("discord:interaction:1") and b != a1
    assert await Job.all().count() == 2
    assert await runtime.redis.zcard(runtime.settings.queue_name) == 2


async def test_a_job_executed_twice_leaves_one_record_and_one_set_of_images(
    runtime: Runtime, run_worker
) -> None:
    job_id = await _imagine(runtime, "test:retry", count=2)
    await run_worker()
    first = {i.index: i.sha256 for i in await Image.filter(job_id=job_id)}

    # Simulate arq running the same job again (a retry after its worker died): its result is gone and the
    # same job id is on the queue once more.
    await runtime.redis.delete(f"arq:result:{job_id}")
    assert await runtime.redis.enqueue_job(
        "imagine", job_id, _job_id=job_id, _queue_name=runtime.settings.queue_name
    )
    await run_worker()

    assert await Job.filter(id=job_id).count() == 1
    assert {i.index: i.sha256 for i in await Image.filter(job_id=job_id)} == first
    job = await Job.get(id=job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1  # already done: not generated again


async def test_a_retry_of_a_job_that_died_mid_run_regenerates_the_same_images(
    runtime: Runtime, run_worker
) -> None:
    job_id = await _imagine(runtime, "test:died", count=2)
    await run_worker()
    first = await _stored(runtime, job_id)

    # The state a worker killed after storing one image leaves behind: still "running", one image row.
    await Job.filter(id=job_id).update(status=JobStatus.RUNNING, delivered_at=None, finished_at=None)
    await Image.filter(job_id=job_id, index=1).delete()
    await runtime.redis.delete(f"arq:result:{job_id}")
    await runtime.redis.enqueue_job(
        "imagine", job_id, _job_id=job_id, _queue_name=runtime.settings.queue_name
    )
    await run_worker()

    job = await Job.get(id=job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    # The same pixels under the same keys (each stored file carries its own C2PA signature, jobs.provenance).
    assert await _stored(runtime, job_id) == first


async def _stored(runtime: Runtime, job_id: str) -> dict:
    """Each stored image's key and decoded content, by index."""
    return {
        i.index: (i.blob_key, replayed_content(await runtime.blobs.get(i.blob_key)))
        for i in await Image.filter(job_id=job_id)
    }


async def test_progress_and_result_are_streamed_for_followers(runtime: Runtime, run_worker) -> None:
    job_id = await _imagine(runtime, "test:events", steps=6)
    await run_worker()
    seen = [(e, d) async for e, d in events.follow(runtime.redis, job_id, block_ms=10)]
    progress = [d for e, d in seen if e == "progress"]
    assert progress and progress[-1] == {"step": 6, "total": 6}
    assert [d["step"] for d in progress] == sorted(d["step"] for d in progress)
    assert seen[-1][0] == "result" and len(seen[-1][1]["images"]) == 1


async def test_an_engine_refusal_fails_the_job_with_the_reason(runtime: Runtime, run_worker) -> None:
    # A spec that passed the front-end but the worker's registry refuses (e.g. a model removed since).
    job_id = await _imagine(runtime, "test:gone")
    await Job.filter(id=job_id).update(spec={**(await Job.get(id=job_id)).spec, "model": "no-such-model"})
    await run_worker()
    job = await Job.get(id=job_id)
    assert job.status == JobStatus.FAILED and "no-such-model" in job.error
    assert await Image.filter(job_id=job_id).count() == 0


async def test_jobs_batched_together_are_charged_their_share_of_gpu_time(
    runtime: Runtime, run_worker
) -> None:
    # Four compatible jobs on a worker that batches: they run as one call, and their GPU seconds (what quotas
    # charge) add up to no more than the time the worker spent, instead of each paying for the whole batch.
    job_ids = [await _imagine(runtime, f"test:share:{i}", seed=i, steps=8) for i in range(4)]
    await run_worker()
    jobs = [await Job.get(id=j) for j in job_ids]
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs)
    wall = (max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)).total_seconds()
    assert all(j.gpu_seconds > 0 for j in jobs)
    assert sum(j.gpu_seconds for j in jobs) <= wall


async def test_images_the_safety_checker_flags_are_kept_and_marked(runtime: Runtime, run_worker) -> None:
    # tiny-strict is tiny with its checker made to flag everything: the same pictures, flagged.
    plain = await _imagine(runtime, "test:plain", count=2)
    strict = await _imagine(runtime, "test:strict", model="tiny-strict", count=2)
    await run_worker()

    rows = {j: await Image.filter(job_id=j).order_by("index") for j in (plain, strict)}
    assert [i.flagged for i in rows[plain]] == [False, False]
    assert [i.flagged for i in rows[strict]] == [True, True]
    pictures = {j: [replayed_content(await runtime.blobs.get(i.blob_key)) for i in rows[j]] for j in rows}
    assert pictures[strict] == pictures[plain]  # not blackened, not changed
    seen = [d async for e, d in events.follow(runtime.redis, strict, block_ms=10) if e == "result"]
    assert [image["flagged"] for image in seen[0]["images"]] == [True, True]
