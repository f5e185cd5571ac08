"""Redis killed and started again (append-only file on, as compose runs it) while a worker runs one job and 20
wait: every job finishes once and is charged once, and the worker reconnects by itself (it used to exit on the
first refused connection)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from atelier.runtime import Runtime
from atelier.settings import Settings
from jobs import events
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from quotas.admin import Admin
from quotas.ledger import audit
from storage.models import Job, JobStatus, get_or_create_tenant, get_or_create_user
from storage.quota_models import LedgerKind, QuotaLedger
from tests.support import WORKER_START_S, RedisServer, atelier_env, start_worker, stop_process

QUEUED = 20


async def test_a_redis_restart_loses_no_job_and_doubles_none(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    variables = {
        "ATELIER_REDIS_URL": redis_server.url,
        "ATELIER_DATABASE_URL": await postgres_databases("atelier_test_redis_restart"),
        "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
        "ATELIER_DATA_DIR": str(tmp_path / "data"),
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_DEVICE": "cpu",
        "ATELIER_MAX_BATCH": "1",
    }
    settings = Settings(**{k.removeprefix("ATELIER_").lower(): v for k, v in variables.items()})
    log = tmp_path / "worker.log"
    async with Runtime.open(settings) as runtime:
        # The priority tier's limits (50 unfinished jobs, 10 a person) let 21 jobs from 3 people wait at once.
        await Admin(runtime.redis, settings.queue_name).set_tier("discord:restart", "priority")
        tenant = await get_or_create_tenant("discord", "restart")

        async def submit(request: str, number: int, **options: object):
            spec = imagine_spec(runtime.registry, tiny=True, prompt=request, seed=1, **options)
            return await enqueue(
                runtime.redis,
                spec,
                request_id=request,
                reply_target=ReplyTarget(platform="cli"),
                queue_name=settings.queue_name,
                tenant=tenant,
                user=await get_or_create_user(tenant, f"u{number % 3}"),
            )

        # The first job runs long enough to be running when Redis goes; the others wait behind it.
        long = await submit("running", 0, size="512x512", hires=1, steps=50)
        waiting = [await submit(f"queued {i}", i + 1, size="64x64", steps=2) for i in range(QUEUED)]
        with log.open("w") as out:
            env = atelier_env(variables | {"PYTHONUNBUFFERED": "1"})
            worker = start_worker(cwd=tmp_path, env=env, stdout=out)
        try:
            deadline = time.monotonic() + WORKER_START_S
            while await events.latest(runtime.redis, long.job_id, "progress") is None:
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.1)
            redis_server.stop()  # SIGKILL: what a crash or an OOM kill of Redis does
            await asyncio.sleep(2)
            redis_server.start()

            ids = [long.job_id, *(q.job_id for q in waiting)]
            deadline = time.monotonic() + 300
            ended = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
            while await Job.filter(id__in=ids, status__in=ended).count() < len(ids):
                assert worker.poll() is None, log.read_text()[-3000:]  # it reconnected instead of exiting
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
            jobs = await Job.filter(id__in=ids)
            assert [(j.id, j.status, j.error) for j in jobs if j.status != JobStatus.SUCCEEDED] == []
            assert all(j.delivered_at is not None for j in jobs)
            for job_id in ids:  # charged once each: one reservation, one settlement
                kinds = await QuotaLedger.filter(job_id=job_id).order_by("id").values_list("kind", flat=True)
                assert kinds == [LedgerKind.RESERVE, LedgerKind.SETTLE], (job_id, kinds)
            assert await audit(tenant) == []
            assert await runtime.redis.zcard(settings.queue_name) == 0
            assert "Redis answers again" in log.read_text()
        finally:
            stop_process(worker)
