"""The arq worker: which functions it runs, how it is tuned, and how it tells the world it is alive.

`WorkerSettings` is the whole arq configuration; `create_worker` builds a worker from it around the services the
composition root made (arq's ctx carries them to the job functions). Each worker keeps a heartbeat key in Redis
so a CLI can tell whether any worker serves its queue, and starts one in-process when none does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from arq.worker import Worker, func

from jobs import edit, enhance, functions, heartbeat, training
from jobs.services import WorkerServices
from jobs.tenant_loras import fetching_tenant_loras


class WorkerSettings:
    """Tuning that every Atelier worker shares. arq's default 0.5 s poll adds half a second to every job; a
    few milliseconds costs Redis a cheap ZRANGEBYSCORE per poll and makes pickup feel instant."""

    functions = (
        func(fetching_tenant_loras(functions.imagine), name="imagine"),
        func(edit.inpaint, name="inpaint"),
        func(edit.vary, name="vary"),
        func(enhance.upscale, name="upscale"),
        func(enhance.enhance, name="enhance"),
    )
    poll_delay = 0.005
    max_jobs = 1
    job_timeout = 1800
    max_tries = 3
    keep_result = 3600
    allow_abort_jobs = True


class TrainWorkerSettings:
    """The training queue's worker (ATELIER_TRAIN_QUEUE_NAME): one job at a time, and a timeout of hours. arq
    retries a crashed worker's job only once its in-progress key expires (job timeout + 10 s), so a crashed
    training run resumes after at most that long."""

    functions = (func(training.train_lora, name="train_lora"),)
    max_jobs = 1
    job_timeout = 6 * 3600


def default_max_jobs(max_batch: int) -> int:
    """Jobs a worker takes at once unless configured: one without batching; with it, twice the batch, so the
    next batch is already waiting, complete, when the running one ends (see jobs.batching)."""
    return 1 if max_batch <= 1 else 2 * max_batch


def create_worker(
    services: WorkerServices,
    *,
    queue_name: str,
    poll_delay: float = WorkerSettings.poll_delay,
    max_jobs: int | None = None,
    job_timeout: int = WorkerSettings.job_timeout,
    max_tries: int = WorkerSettings.max_tries,
    burst: bool = False,
    handle_signals: bool = True,
    functions: tuple = WorkerSettings.functions,
    training_dir: Path | None = None,
) -> Worker:
    """An arq worker on `services.redis` serving `queue_name`, with a heartbeat while it runs.

    `max_jobs` None: `default_max_jobs(services.max_batch)`. `functions`: the image jobs by default;
    `TrainWorkerSettings.functions` for the training queue, whose checkpoints go under `training_dir`."""
    worker_id = uuid.uuid4().hex[:12]
    beat: dict[str, asyncio.Task] = {}

    async def on_startup(ctx: dict) -> None:
        beat["task"] = asyncio.create_task(heartbeat.beat(services.redis, queue_name, worker_id))

    async def on_shutdown(ctx: dict) -> None:
        task = beat.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await services.redis.delete(heartbeat.heartbeat_key(queue_name, worker_id))
        await services.batcher.aclose()

    return Worker(
        functions=functions,
        queue_name=queue_name,
        redis_pool=services.redis,
        ctx={"services": services, "training_dir": training_dir},
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        poll_delay=poll_delay,
        max_jobs=default_max_jobs(services.max_batch) if max_jobs is None else max_jobs,
        job_timeout=job_timeout,
        max_tries=max_tries,
        keep_result=WorkerSettings.keep_result,
        allow_abort_jobs=WorkerSettings.allow_abort_jobs,
        burst=burst,
        handle_signals=handle_signals,
    )
