"""What the queue costs: N tiny-model images through the full path against the same N from the engine directly.

The full path is what a chat command gets: spec → job record → arq on Redis → worker → engine → PNG in the blob
store → record → result event. The direct path is `Engine.txt2img` plus PNG encoding in a loop. Both run in this
one process, interleaved, on the same warm model, so the ratio is fair on a shared, noisy machine.

Pickup latency is arq's own measure: a job's start time minus its enqueue time, for jobs enqueued one at a time
to an idle worker (what a user waits before their job starts). Target: p50 ≤ 20 ms.

    python bench/queue_overhead.py [--n 40] [--redis-url redis://127.0.0.1:6379/9]

Without --redis-url it runs on the embedded defaults (Atelier's own Redis on a unix socket, SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from arq.jobs import Job as ArqJob

from atelier.runtime import Runtime
from atelier.settings import Settings
from engine.output import png_bytes
from jobs import events
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from jobs.worker import create_worker


async def main(n: int, redis_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=f"sqlite://{tmp}/atelier.db",
            redis_url=redis_url,
            tiny_models=True,
            queue_name=f"atelier:bench:{uuid.uuid4().hex[:6]}",
        )
        async with Runtime.open(settings) as runtime:
            services = runtime.worker_services()
            worker = create_worker(services, queue_name=settings.queue_name, handle_signals=False)
            worker_task = asyncio.create_task(worker.async_run())
            spec = imagine_spec(runtime.registry, prompt="a lighthouse at dawn", seed=1, tiny=True)
            preset = runtime.registry.get(spec.model)
            request = spec.request()
            png_bytes(services.engine.txt2img(preset, request)[0])  # warm the model cache for both paths

            direct, queued, pickups = [], [], []
            for i in range(n):
                started = time.perf_counter()
                png_bytes(services.engine.txt2img(preset, request)[0])
                direct.append(time.perf_counter() - started)

                started = time.perf_counter()
                job = await enqueue(
                    runtime.redis,
                    spec,
                    request_id=f"bench:{i}:{uuid.uuid4()}",
                    reply_target=ReplyTarget(platform="cli"),
                    queue_name=settings.queue_name,
                )
                async for event, _ in events.follow(runtime.redis, job.job_id, block_ms=50):
                    if event == "failed":
                        raise RuntimeError(f"job {job.job_id} failed")
                queued.append(time.perf_counter() - started)
                arq_job = ArqJob(job.job_id, runtime.redis, _queue_name=settings.queue_name)
                await arq_job.result(poll_delay=0.001)  # the result record lands just after the result event
                info = await arq_job.result_info()
                pickups.append((info.start_time - info.enqueue_time).total_seconds())

            await worker.close()
            await asyncio.gather(worker_task, return_exceptions=True)

    backend = "redis " + redis_url if redis_url else "embedded redis (unix socket), sqlite"
    ms = sorted(p * 1000 for p in pickups)
    p50, p95 = statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"queue overhead, {n} tiny images (64x64, {spec.steps} steps), {backend}")
    print(
        f"  engine direct : {sum(direct):7.3f} s  ({statistics.median(direct) * 1000:6.1f} ms/image median)"
    )
    print(
        f"  full queue    : {sum(queued):7.3f} s  ({statistics.median(queued) * 1000:6.1f} ms/image median)"
    )
    print(
        f"  overhead ratio: {sum(queued) / sum(direct):.2f}x  (+{(sum(queued) - sum(direct)) / n * 1000:.1f} ms/image)"
    )
    print(f"  pickup latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms  (target p50 <= 20 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.redis_url))
