"""What batching buys: 8 compatible tiny text-to-image jobs one by one against the same 8 batched.

Through the engine: `Engine.txt2img` eight times against `Engine.txt2img_batch` in batches of `--max-batch`
(the worker's ATELIER_MAX_BATCH, default 4) and of all eight, on the same warm model, rounds interleaved so a
shared, noisy machine treats each way alike. Every batched image is also checked against its lone twin.

With `--queue`, the same eight jobs also go through the full path (spec → job record → arq → worker → engine →
PNG in the blob store → record), once with a worker that does not batch (ATELIER_MAX_BATCH=1) and once with one
that does, on the embedded defaults (Atelier's own Redis, SQLite) or `--redis-url`.

    python bench/batching.py [--rounds 3] [--max-batch 4] [--queue] [--redis-url redis://127.0.0.1:6379/9]

It prints seconds per image for each way and the throughput ratios (above 1: batching is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from atelier.runtime import Runtime
from atelier.settings import Settings
from engine.engine import Engine, TextToImage
from engine.registry import Registry
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from jobs.worker import create_worker
from storage.models import Job, JobStatus

JOBS = 8
PROMPTS = ["a lighthouse at dawn", "a red fox in snow", "a bowl of plums", "a harbour at night"]


def engine_rounds(cache: Path, rounds: int, max_batch: int) -> dict[str, list[float]]:
    """Seconds for the eight requests each way, per round."""
    registry = Registry.load()
    engine = Engine(registry, cache, device="cpu")
    preset = registry.get("tiny")
    requests = [TextToImage.for_preset(preset, PROMPTS[i % len(PROMPTS)], seed=1000 + i) for i in range(JOBS)]
    engine.txt2img_batch(preset, requests)  # build, load and warm up
    alone = [engine.txt2img(preset, request) for request in requests]
    ways = {
        "one by one": lambda: [engine.txt2img(preset, request) for request in requests],
        f"batches of {max_batch}": lambda: [
            engine.txt2img_batch(preset, requests[i : i + max_batch]) for i in range(0, JOBS, max_batch)
        ],
        f"one batch of {JOBS}": lambda: engine.txt2img_batch(preset, requests),
    }
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, run in ways.items():
            started = time.perf_counter()
            run()
            seconds[way].append(time.perf_counter() - started)
    worst = max(
        int(np.abs(np.asarray(b[0], np.int16) - np.asarray(a[0], np.int16)).max())
        for a, b in zip(alone, engine.txt2img_batch(preset, requests), strict=True)
    )
    print(f"largest pixel difference, batched against alone: {worst} of 255")
    return seconds


async def queue_run(cache: Path, max_batch: int, redis_url: str | None) -> float:
    """Seconds from a worker's start until all eight queued jobs have succeeded."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=f"sqlite://{tmp}/atelier.db",
            redis_url=redis_url,
            tiny_models=True,
            model_cache_dir=cache,
            max_batch=max_batch,
            queue_name=f"atelier:bench:{uuid.uuid4().hex[:6]}",
        )
        async with Runtime.open(settings) as runtime:
            services = runtime.worker_services()
            preset = runtime.registry.get("tiny")
            services.engine.txt2img(preset, TextToImage.for_preset(preset, "warm up"))
            job_ids = []
            for i in range(JOBS):
                spec = imagine_spec(
                    runtime.registry, prompt=PROMPTS[i % len(PROMPTS)], seed=1000 + i, tiny=True
                )
                queued = await enqueue(
                    runtime.redis,
                    spec,
                    request_id=f"bench:{uuid.uuid4()}",
                    reply_target=ReplyTarget(platform="cli"),
                    queue_name=settings.queue_name,
                )
                job_ids.append(queued.job_id)
            worker = create_worker(
                services, queue_name=settings.queue_name, burst=True, handle_signals=False, poll_delay=0.001
            )
            started = time.perf_counter()
            try:
                await worker.async_run()
            finally:
                await worker.close()
            seconds = time.perf_counter() - started
            statuses = {(await Job.get(id=job_id)).status for job_id in job_ids}
            assert statuses == {JobStatus.SUCCEEDED}, statuses
            print(
                f"  worker with ATELIER_MAX_BATCH={max_batch}: calls by size {dict(services.batcher.batch_sizes)}"
            )
            return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--queue", action="store_true", help="also run the jobs through the queue and worker")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        print(
            f"{JOBS} compatible tiny jobs (64x64, 4 steps) on the CPU, {torch.get_num_threads()} torch threads"
        )
        seconds = engine_rounds(Path(cache), args.rounds, args.max_batch)
        base = statistics.median(seconds["one by one"])
        for way, values in seconds.items():
            median = statistics.median(values)
            print(f"  engine, {way:<16} {median / JOBS:.4f} s/image   throughput x{base / median:.2f}")
        if args.queue:
            plain, batched = [], []
            for _ in range(args.rounds):
                plain.append(asyncio.run(queue_run(Path(cache), 1, args.redis_url)))
                batched.append(asyncio.run(queue_run(Path(cache), args.max_batch, args.redis_url)))
            p, b = statistics.median(plain), statistics.median(batched)
            print(f"  queue, no batching        {p / JOBS:.4f} s/image")
            print(
                f"  queue, batches of {args.max_batch}       {b / JOBS:.4f} s/image   throughput x{p / b:.2f}"
            )


if __name__ == "__main__":
    main()
