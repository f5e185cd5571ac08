"""A worker killed with SIGKILL in the middle of a job, then a new worker: the job completes once, keeps its
place in the queue, and the ledger shows exactly one settle.

The dead worker's claim on the job lapses within its lease (jobs.worker.LEASE_S, 10 s), after which the new
worker takes the job; tests/reliability has the same with two workers side by side.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jobs import events
from quotas.ledger import audit
from storage.models import Job, JobStatus, get_or_create_tenant
from storage.quota_models import LedgerKind, QuotaLedger, QuotaReservation, ReservationState
from tests.support import start_worker

JOB_TIMEOUT_S = 40


def _worker(env: dict[str, str], cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**env, "ATELIER_JOB_TIMEOUT": str(JOB_TIMEOUT_S), "ATELIER_MAX_BATCH": "1"}
    return start_worker(*extra, cwd=cwd, env=env)


@pytest.mark.slow
async def test_a_job_whose_worker_was_killed_completes_once_and_settles_once(
    runtime, env, tmp_path: Path, imagine
) -> None:
    queued = await imagine("discord:crash", "1", "long", steps=10)
    queue = runtime.settings.queue_name
    score = await runtime.redis.zscore(queue, queued.job_id)

    first = _worker(env, tmp_path)
    try:
        async for event, data in events.follow(runtime.redis, queued.job_id, block_ms=100):
            assert first.poll() is None, first.stderr.read()
            if event == "progress":
                os.kill(first.pid, signal.SIGKILL)  # mid-job
                killed_at_step = data["step"]
                break
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.RUNNING and job.attempts == 1 and killed_at_step < 10
    assert (await QuotaReservation.get(job_id=queued.job_id)).state == ReservationState.OPEN
    assert await runtime.redis.zscore(queue, queued.job_id) == score  # still queued, at its place

    started = time.monotonic()
    second = _worker(env, tmp_path, "--burst")  # exits once the queue is empty
    try:
        await asyncio.get_running_loop().run_in_executor(None, second.wait, 120)
    finally:
        if second.poll() is None:
            second.kill()
    log = second.stderr.read()
    assert second.returncode == 0, log
    print(f"\nkilled at step {killed_at_step}; retried and finished {time.monotonic() - started:.1f} s later")

    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2 and job.delivered_at is not None, log[
        -3000:
    ]
    kinds = await QuotaLedger.filter(job_id=queued.job_id).order_by("id").values_list("kind", flat=True)
    assert kinds == [LedgerKind.RESERVE, LedgerKind.SETTLE]
    assert await audit(await get_or_create_tenant("discord", "crash")) == []
