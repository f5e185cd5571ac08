"""The arq worker: which functions it runs, how it is tuned, and how it tells the world it is alive.

`WorkerSettings` is the whole arq configuration; `create_worker` builds a worker from it around the services the
composition root made (arq's ctx carries them to the job functions). Each worker keeps a heartbeat key in Redis
so a CLI can tell whether any worker serves its queue, and starts one in-process when none does.

Leases: arq claims a job with an in-progress key that lives as long as the job may run (job timeout + 10 s), so a
worker killed mid-job (SIGKILL, OOM, a lost machine) would hold its job for half an hour. `AtelierWorker` claims
for `lease_s` seconds instead (10 by default) and renews the claims of the jobs it runs every second; a dead
worker's claims lapse within `lease_s`, and the next worker that polls takes the job, at its place in the queue.
The job's own time limit is enforced by the job itself (`jobs.lifecycle`, which fails it in plain words) and by
arq a minute later as a backstop. A job arq gives up on (its tries used up by crashes, or expired) is marked
failed, refunded and told to its user (`jobs.lifecycle.abandon`).

Routing: an `AtelierWorker` takes, from the head of the fair queue, the jobs `jobs.routing` picks for it (those
of the models it holds first; another's only after a bounded wait), and its heartbeat advertises what it may
serve and holds; `OwnJobsWorker` takes its own jobs whatever they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.cron import cron
from arq.worker import Worker, func
from redis.exceptions import RedisError

from engine import gpu_stats
from jobs import (
    describe,
    edit,
    enhance,
    functions,
    guided,
    heartbeat,
    lifecycle,
    metrics,
    prompt_check,
    routing,
    training,
)
from jobs.retention import RetentionDays
from jobs.retention import sweep as retention_sweep
from jobs.services import WorkerServices
from jobs.tenant_loras import fetching_tenant_loras


class WorkerSettings:
    """Tuning that every Atelier worker shares. arq's default 0.5 s poll adds half a second to every job; a
    few milliseconds costs Redis a cheap ZRANGEBYSCORE per poll and makes pickup feel instant."""

    functions = (
        func(fetching_tenant_loras(functions.imagine), name="imagine"),
        func(edit.inpaint, name="inpaint"),
        func(fetching_tenant_loras(edit.vary), name="vary"),
        func(fetching_tenant_loras(edit.creative_upscale), name="creative_upscale"),
        func(enhance.upscale, name="upscale"),
        func(enhance.enhance, name="enhance"),
        func(guided.guided, name="guided"),
        func(describe.describe, name="describe"),
        func(lifecycle.announce_end, name="announce_end"),  # a job failed by the front-end's reconciliation
    )
    poll_delay = 0.005
    max_jobs = 1
    job_timeout = 1800
    max_tries = 3
    keep_result = 3600
    allow_abort_jobs = True


class TrainWorkerSettings:
    """The training queue's worker (ATELIER_TRAIN_QUEUE_NAME): one job at a time, and a timeout of hours. A
    crashed worker's claim lapses within `LEASE_S` like any job's, and the retry resumes from the last
    checkpoint in the blob store (`jobs.training`)."""

    functions = (func(training.train_lora, name="train_lora"),)
    max_jobs = 1
    job_timeout = 6 * 3600


LEASE_S = 10.0  # how long a job stays claimed by a worker that stopped renewing (died)
RENEW_EVERY_S = 1.0
RETENTION_MINUTE = 17  # retention runs hourly, at this minute past the hour (jobs.retention)
REDIS_RETRY_S = 1.0  # how often a worker that lost Redis tries it again
ARQ_TIMEOUT_MARGIN_S = 60  # arq's own timeout backstops the job's (jobs.lifecycle enforces the real one)

log = logging.getLogger(__name__)


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
    lease_s: float = LEASE_S,
    models: Collection[str] | None = None,
    routing_wait_s: float = routing.DEFAULT_WAIT_S,
    retention_days: RetentionDays | None = None,
) -> Worker:
    """An arq worker on `services.redis` serving `queue_name`, with a heartbeat while it runs.

    `max_jobs` None: `default_max_jobs(services.max_batch)`. `functions`: the image jobs by default;
    `TrainWorkerSettings.functions` for the training queue, whose checkpoints go under `training_dir`.
    `only_jobs`: a stand-in that runs just these jobs and then stops (see `OwnJobsWorker`); it beats no
    heartbeat, since it serves nobody else. `lease_s`: see the module's docstring. `models`: the only models
    this worker runs (None: any); `routing_wait_s`: how long a job waits for a worker that has its model resident
    (0: routing off); see jobs.routing. `retention_days`: the default periods of the hourly retention job
    (jobs.retention), which arq enqueues once per hour for all workers that run it; None: this worker runs none.

    A worker of image jobs (not a stand-in) also answers the front-ends' prompt checks while it runs
    (`jobs.prompt_check.serve`, with this process's local classifier unless ATELIER_PROMPT_CLASSIFIER=off)."""
    worker_id = uuid.uuid4().hex[:12]
    beat: dict[str, asyncio.Task] = {}
    serves = None if models is None else frozenset(models)

    def advert() -> str:
        return routing.advert(
            host=socket.gethostname(),
            pid=os.getpid(),
            serves=serves,
            resident=worker.resident(),
            loras=_lora_names(services),
            gpu_free_bytes=_gpu_free_bytes(services),
        )

    async def on_startup(ctx: dict) -> None:
        if only_jobs is None:
            beat["task"] = asyncio.create_task(
                heartbeat.beat(services.redis, queue_name, worker_id, advert, worker.advert_changed)
            )
            device = getattr(services.engine, "device", None)
            if device is not None and _export_gpu(device):
                beat["gpu"] = asyncio.create_task(_export_gpu_every(device, heartbeat.HEARTBEAT_EVERY_S))
            classifier = prompt_check.local_classifier()
            if classifier is not None and "imagine" in worker.functions:
                beat["prompts"] = asyncio.create_task(prompt_check.serve(services.redis, classifier))

    async def on_shutdown(ctx: dict) -> None:
        for task in (beat.pop("task", None), beat.pop("gpu", None), beat.pop("prompts", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await services.redis.delete(heartbeat.heartbeat_key(queue_name, worker_id))
        await services.batcher.aclose()

    options: dict[str, Any] = {
        "router": routing.Router(
            queue_name=queue_name, worker_id=worker_id, serves=serves, wait_s=routing_wait_s
        ),
        "engine_resident": lambda: _engine_resident(services),
    }
    if only_jobs is not None:
        options = {"only_jobs": frozenset(only_jobs), "max_burst_jobs": len(only_jobs)}
        burst = True
    worker = (OwnJobsWorker if only_jobs is not None else AtelierWorker)(
        **options,
        lease_s=lease_s,
        functions=functions,
        queue_name=queue_name,
        redis_pool=services.redis,
        ctx={
            "services": services,
            "training_dir": training_dir,
            "job_timeout": job_timeout,
            "retention": retention_days,
            "queue_name": queue_name,  # the relax lane's checks for waiting fast jobs (jobs.relax)
            "relax_running": {},  # job id -> GiveWay of this worker's running relax jobs (arq copies ctx per job)
        },
        cron_jobs=_retention_cron(retention_days, only_jobs),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        poll_delay=poll_delay,
        max_jobs=default_max_jobs(services.max_batch) if max_jobs is None else max_jobs,
        job_timeout=job_timeout + ARQ_TIMEOUT_MARGIN_S,
        max_tries=max_tries,
        keep_result=WorkerSettings.keep_result,
        allow_abort_jobs=WorkerSettings.allow_abort_jobs,
        burst=burst,
        handle_signals=handle_signals,
    )
    return worker


def _retention_cron(days: RetentionDays | None, only_jobs: Collection[str] | None) -> list:
    """The hourly retention job, unless there are no periods or the worker is a CLI's stand-in. `unique`: its
    arq job id names the hour, so of all workers only one runs it each time."""
    if days is None or only_jobs is not None:
        return []
    return [
        cron(
            retention_sweep,
            name="retention",
            minute=RETENTION_MINUTE,
            second=0,
            unique=True,
            timeout=1800,
            keep_result=WorkerSettings.keep_result,  # what it deleted, for an operator to read
        )
    ]


def _engine_resident(services: WorkerServices) -> list[str]:
    """The presets resident in the engine's cache. The GPU thread may change the cache while it is read: then
    the read is tried again (the worst case is an advert one beat old)."""
    cache = getattr(services.engine, "cache", None)
    for _ in range(3):
        try:
            return [] if cache is None else cache.loaded()
        except RuntimeError:
            continue
    return []


def _lora_names(services: WorkerServices) -> list[str]:
    loras = getattr(services.engine, "loras", None)
    return [] if loras is None else loras.names()


def _export_gpu(device: Any) -> bool:
    """Set the GPU gauges from a reading of `device` now; False (and nothing exported) where there is none to
    read: a CPU worker, or CUDA not available."""
    reading = gpu_stats.read(device)
    metrics.export_gpu(reading)
    return reading is not None


async def _export_gpu_every(device: Any, every_s: float) -> None:
    """The GPU gauges, read again every `every_s` (NVML calls take microseconds: on the event loop)."""
    while True:
        await asyncio.sleep(every_s)
        _export_gpu(device)


def _gpu_free_bytes(services: WorkerServices) -> int | None:
    device = getattr(services.engine, "device", None)
    if device is None or getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    return int(torch.cuda.mem_get_info(device)[0])


class AtelierWorker(Worker):
    """arq's worker with short, renewed claims on its running jobs, and a word to the user for every job arq
    gives up on (see the module's docstring)."""

    def __init__(
        self,
        *args: Any,
        lease_s: float = LEASE_S,
        router: routing.Router | None = None,
        engine_resident: Callable[[], list[str]] = list,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lease_s = lease_s
        self.in_progress_timeout_s = lease_s  # what arq's claim (SET PX) is set to when a job starts
        self._redis_down = False
        self.router = router
        self._engine_resident = engine_resident
        self._running_models: dict[str, str] = {}  # job id -> model, of the jobs this worker runs
        self.advert_changed = asyncio.Event()  # set when what it holds changed: the heartbeat says so at once

    def resident(self) -> set[str]:
        """The models this worker holds: resident in its engine, or being loaded for a job it runs."""
        for job_id in [j for j in self._running_models if j not in self.tasks]:
            del self._running_models[job_id]
        return set(self._engine_resident()) | set(self._running_models.values())

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start, on the jobs model-aware routing picks from the head of the queue (jobs.routing)."""
        if self.router is None:
            await super().start_jobs(job_ids)
            return
        held = self.resident()
        before = set(self.tasks)
        await super().start_jobs(await self.router.order(self.pool, job_ids, held))
        for job_id in set(self.tasks) - before:
            model = self.router.model_of(job_id)
            if model:
                self._running_models[job_id] = model
                if model not in held:
                    self.advert_changed.set()

    async def _poll_iteration(self) -> None:
        """arq's poll, surviving a Redis that restarts or drops the connection: the worker waits for it (logged
        once per outage) instead of exiting. Jobs that could not be finished meanwhile keep their place in the
        queue and are taken again when their lease lapses; they are idempotent (jobs.lifecycle)."""
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.warning("Redis does not answer (%s); the worker waits for it", exc)
            self._redis_down = True
            await asyncio.sleep(REDIS_RETRY_S)
            return
        if self._redis_down:
            log.info("Redis answers again; the worker takes jobs again")
        self._redis_down = False

    async def main(self) -> None:
        renewing = asyncio.create_task(self._renew_leases())
        try:
            await super().main()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew_leases(self) -> None:
        """Every second, extend the claim of each job this worker has taken; survives Redis outages (a claim
        that lapsed meanwhile may be taken by another worker: the job is idempotent, see jobs.lifecycle)."""
        failing = False
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            job_ids = list(self.tasks)
            if not job_ids:
                continue
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in job_ids:
                        pipe.pexpire(in_progress_key_prefix + job_id, int(self.lease_s * 1000))
                    await pipe.execute()
                if failing:
                    log.info("renewing job leases again")
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage
                    log.warning("cannot renew job leases (%s); retrying every %.0f s", exc, RENEW_EVERY_S)
                failing = True

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq gives up on a job without running it (tries used up, expired, aborted before it started): close
        it as Atelier's own failures are closed, so nobody waits for it."""
        await super().finish_failed_job(job_id, result_data)
        await lifecycle.abandon(self.ctx["services"], job_id)


class OwnJobsWorker(AtelierWorker):
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
