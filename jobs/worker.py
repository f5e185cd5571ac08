"""The arq worker: which functions it runs, how it is tuned, and how it tells the world it is alive.

`WorkerSettings` is the whole arq configuration; `create_worker` builds a worker from it around the services the
composition root made (arq's ctx carries them to the job functions). Each worker keeps a heartbeat key in Redis
so a CLI can tell whether any worker serves its queue, and starts one in-process when none does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

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
    only_jobs: Collection[str] | None = None,
) -> Worker:
    """An arq worker on `services.redis` serving `queue_name`, with a heartbeat while it runs.

    `max_jobs` None: `default_max_jobs(services.max_batch)`. `functions`: the image jobs by default;
    `TrainWorkerSettings.functions` for the training queue, whose checkpoints go under `training_dir`.
    `only_jobs`: a stand-in that runs just these jobs and then stops (see `OwnJobsWorker`); it beats no
    heartbeat, since it serves nobody else."""
    worker_id = uuid.uuid4().hex[:12]
    beat: dict[str, asyncio.Task] = {}

    async def on_startup(ctx: dict) -> None:
        if only_jobs is None:
            beat["task"] = asyncio.create_task(heartbeat.beat(services.redis, queue_name, worker_id))

    async def on_shutdown(ctx: dict) -> None:
        task = beat.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await services.redis.delete(heartbeat.heartbeat_key(queue_name, worker_id))
        await services.batcher.aclose()

    options = {}
    if only_jobs is not None:
        options = {"only_jobs": frozenset(only_jobs), "max_burst_jobs": len(only_jobs)}
        burst = True
    return (OwnJobsWorker if only_jobs is not None else Worker)(
        **options,
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


class OwnJobsWorker(Worker):
    """A worker that takes only `only_jobs` from a shared queue, then stops: the CLI's stand-in when no worker
    serves the queue. Every other job stays where it is: a chat job needs a worker that can post to its
    platform, and a job of another CLI is that CLI's to run. Its own job stays on the shared queue until it
    starts, so a real worker that appears meanwhile may take it instead, and nothing is stranded if the CLI dies.
    """

    def __init__(self, *args: Any, only_jobs: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.only_jobs = only_jobs

    def started_any(self) -> bool:
        """Whether it has taken one of its jobs (which it then finishes before `async_run` returns)."""
        return self._jobs_started() > 0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq hands over the queue's first ids; ours may be further back, so ask for ours by id. arq's own
        # checks (still queued, due, not running elsewhere) apply to them as to any job.
        del job_ids
        await super().start_jobs([job_id.encode() for job_id in sorted(self.only_jobs)])
