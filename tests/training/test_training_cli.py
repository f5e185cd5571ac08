"""`atelier lora …` and `atelier worker --queues train` as real processes on the real services: training from a
folder, listing, using the LoRA from `atelier imagine`, and a worker SIGKILLed mid-training whose job resumes
from its last checkpoint on the next worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from arq.constants import in_progress_key_prefix

from jobs import events
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Job, JobStatus, get_or_create_tenant
from tests.support import run_atelier, start_worker


@pytest.mark.slow
async def test_lora_train_list_imagine_and_delete(runtime, env, dataset_dir: Path, tmp_path: Path) -> None:
    train = run_atelier(
        "lora",
        "train",
        str(dataset_dir),
        "--name",
        "ink",
        "--trigger",
        "zq",
        "--tenant",
        "discord:cli-a",
        "--steps",
        "8",
        "--learning-rate",
        "5e-3",
        "--checkpoint-every",
        "4",
        env=env,
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "step 8/8 loss" in train.stderr
    lines = train.stdout.split()
    assert (tmp_path / lines[0]).exists() and "LoRA ink is ready for discord:cli-a" in train.stdout

    listing = run_atelier("lora", "list", "--tenant", "discord:cli-a", env=env, cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.startswith("ink\tready\ttiny\ttrigger: zq")

    again = run_atelier(
        "lora",
        "train",
        str(dataset_dir),
        "--name",
        "ink",
        "--trigger",
        "zq",
        "--tenant",
        "discord:cli-a",
        env=env,
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "the LoRA name 'ink' is already taken here (ready)" in again.stderr

    other = run_atelier(
        "imagine", "zq", "--steps", "2", "--lora", "ink:1", "--tenant", "discord:cli-b", env=env, cwd=tmp_path
    )
    assert other.returncode == 2 and "unknown LoRA 'ink'" in other.stderr

    delete = run_atelier("lora", "delete", "ink", "--tenant", "discord:cli-a", env=env, cwd=tmp_path)
    assert delete.returncode == 0, delete.stderr[-2000:]
    tenant = await get_or_create_tenant("discord", "cli-a")
    assert not await LoraModel.exists(tenant=tenant)


def _worker(env: dict[str, str], cwd: Path, *extra: str) -> subprocess.Popen:
    return start_worker("--queues", "train", *extra, cwd=cwd, env=env)


@pytest.mark.slow
async def test_a_killed_training_worker_resumes_from_its_last_checkpoint(
    runtime, env, dataset_zip: bytes, tmp_path: Path
) -> None:
    import uuid

    from jobs.specs import ReplyTarget
    from jobs.training import request_training

    tenant = await get_or_create_tenant("discord", "crash")
    queued = await request_training(
        runtime.redis,
        runtime.blobs,
        runtime.registry,
        tenant=tenant,
        user=None,
        name="sturdy",
        trigger="zq",
        dataset_zip=dataset_zip,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.train_queue_name,
        tiny=True,
        steps=150,
        checkpoint_every=10,
    )
    checkpoint = runtime.settings.data_dir / "training" / queued.job_id / "checkpoints" / "checkpoint.pt"
    first = _worker(env, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint was written"
            await asyncio.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.RUNNING and job.attempts == 1
    # arq retries a crashed worker's job once its in-progress key expires (ATELIER_TRAIN_JOB_TIMEOUT + 10 s):
    # expire it now rather than wait.
    await runtime.redis.delete(in_progress_key_prefix + queued.job_id)

    second = _worker(env, tmp_path, "--burst")
    try:
        await asyncio.get_running_loop().run_in_executor(None, second.wait, 300)
    finally:
        if second.poll() is None:
            second.kill()
    log = second.stderr.read()
    assert second.returncode == 0, log[-3000:]
    resumed = [
        data["step"]
        async for event, data in events.follow(runtime.redis, queued.job_id)
        if event == "resumed"
    ]
    print(f"\nkilled after a checkpoint; the retry resumed at step {resumed}")
    assert len(resumed) == 1 and 10 <= resumed[0] < 150 and resumed[0] % 10 == 0
    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2, job.error
    assert (await LoraModel.get(tenant=tenant, name="sturdy")).status == LoraStatus.READY
    assert not checkpoint.parent.parent.exists()  # the job's folder is removed once it is done
