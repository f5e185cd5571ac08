"""Batching and LoRAs through the whole path: enqueue → arq on Redis → worker's batcher → engine → blobs."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from atelier.runtime import Runtime
from engine.engine import Engine, TextToImage
from engine.lora import LoraLibrary
from engine.output import png_bytes
from jobs.queue import enqueue
from jobs.specs import Imagine, ReplyTarget, imagine_spec
from jobs.worker import default_max_jobs
from storage.models import Image, Job, JobStatus
from tests.support import run_atelier

CLI = ReplyTarget(platform="cli")


async def _enqueue(runtime: Runtime, spec: Imagine, request_id: str) -> str:
    queued = await enqueue(
        runtime.redis, spec, request_id=request_id, reply_target=CLI, queue_name=runtime.settings.queue_name
    )
    return queued.job_id


async def _image(runtime: Runtime, job_id: str, index: int = 0) -> PILImage.Image:
    job = await Job.get(id=job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    row = await Image.get(job_id=job_id, index=index)
    return PILImage.open(io.BytesIO(await runtime.blobs.get(row.blob_key)))


async def test_waiting_compatible_jobs_run_as_one_batch(runtime: Runtime, run_worker, engine: Engine) -> None:
    prompts = ["a red fox", "a lighthouse", "a bowl of plums", "a red fox"]
    specs = [
        imagine_spec(runtime.registry, prompt=p, seed=100 + i, steps=3, tiny=True)
        for i, p in enumerate(prompts)
    ]
    job_ids = [await _enqueue(runtime, spec, f"test:batch:{i}") for i, spec in enumerate(specs)]
    services = runtime.worker_services()
    assert services.max_batch == 4 and default_max_jobs(services.max_batch) == 8
    busy = threading.Event()
    services.gpu.submit(busy.wait)  # hold the GPU thread until all four jobs wait in the batcher
    worker = asyncio.create_task(run_worker(services))
    for _ in range(5000):
        if services.batcher.waiting == 4:
            break
        await asyncio.sleep(0.002)
    busy.set()
    await worker
    assert services.batcher.batch_sizes == {4: 1}
    preset = runtime.registry.get(specs[0].model)
    for job_id, spec in zip(job_ids, specs, strict=True):
        alone = engine.txt2img(preset, TextToImage.for_preset(preset, spec.prompt, seed=spec.seed, steps=3))
        difference = np.abs(
            np.asarray(await _image(runtime, job_id), np.int16) - np.asarray(alone[0], np.int16)
        )
        assert difference.max() <= 3


async def test_the_job_after_a_lora_job_sees_the_base_model(
    runtime: Runtime, run_worker, engine: Engine
) -> None:
    library = LoraLibrary(runtime.settings.loras_dir)
    common = {"prompt": "a red fox", "seed": 5, "steps": 3, "tiny": True, "lora_library": library}
    with_lora = await _enqueue(runtime, imagine_spec(runtime.registry, loras=[("ink", 1.0)], **common), "t:l")
    after = await _enqueue(runtime, imagine_spec(runtime.registry, **common), "t:after")
    zero = await _enqueue(runtime, imagine_spec(runtime.registry, loras=[("ink", 0.0)], **common), "t:zero")
    await run_worker(runtime.worker_services())
    preset = runtime.registry.get("tiny")
    base = png_bytes(engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", seed=5, steps=3))[0])
    assert png_bytes(await _image(runtime, after)) == base
    assert png_bytes(await _image(runtime, zero)) == base
    assert png_bytes(await _image(runtime, with_lora)) != base


async def test_a_lora_gone_by_run_time_fails_the_job_with_the_known_names(
    runtime: Runtime, run_worker
) -> None:
    spec = imagine_spec(runtime.registry, prompt="a red fox", steps=3, tiny=True)
    job_id = await _enqueue(runtime, spec.model_copy(update={"loras": [("gone", 1.0)]}), "test:gone")
    await run_worker(runtime.worker_services())
    job = await Job.get(id=job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "unknown LoRA 'gone'; known LoRAs: broken, ink, paper, sketch"


def test_the_cli_refuses_an_unknown_lora_before_anything_starts(tmp_path: Path, lora_dir: Path) -> None:
    env = {"ATELIER_LORA_DIR": str(lora_dir), "ATELIER_TINY_MODELS": "1"}
    for lora, message in [
        ("watercolor:0.5", "known LoRAs: broken, ink, paper, sketch"),
        ("ink:x", "not a number"),
    ]:
        result = run_atelier("imagine", "a fox", "--lora", "paper", "--lora", lora, cwd=tmp_path, env=env)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or stored
