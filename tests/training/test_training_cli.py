"""`atelier lora …` and `atelier worker --queues train` as real processes on the real services: training from a
folder, listing, using the LoRA from `atelier imagine`, and a worker SIGKILLed mid-training whose job resumes
from its last checkpoint on the next worker, on the same machine or on another one (its own data folder, the
checkpoint fetched from S3)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from arq.constants import in_progress_key_prefix

from atelier.settings import Settings
from jobs import events
from jobs.specs import ReplyTarget
from jobs.training import checkpoint_key, request_training
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


async def _request_long_training(runtime, dataset_zip: bytes, server: str, name: str):
    """A 150-step training of `name` for Discord server `server`, checkpointed every 10 steps: long enough to be
    killed after its first checkpoint. Returns the server's tenant and the queued job."""
    tenant = await get_or_create_tenant("discord", server)
    return tenant, await request_training(
        runtime.redis,
        runtime.blobs,
        runtime.registry,
        tenant=tenant,
        user=None,
        name=name,
        trigger="zq",
        dataset_zip=dataset_zip,
        request_id=f"test:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.train_queue_name,
        tiny=True,
        steps=150,
        checkpoint_every=10,
    )


@pytest.mark.slow
async def test_a_killed_training_worker_resumes_from_its_last_checkpoint(
    runtime, env, dataset_zip: bytes, tmp_path: Path
) -> None:
    tenant, queued = await _request_long_training(runtime, dataset_zip, "crash", "sturdy")
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
    # Another worker takes a crashed worker's job once its lease lapses (jobs.worker.LEASE_S): lapse it now.
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


def _machine_env(settings: Settings, machine: Path) -> dict[str, str]:
    """A worker on a machine of its own: its own data folder (training files included) and LoRA folder; the
    queue, the database and the blob store (S3) shared, as in a fleet. The tiny models' cache is shared too: it
    only saves building them again."""
    return {
        "ATELIER_DATA_DIR": str(machine / "data"),
        "ATELIER_LORA_DIR": str(machine / "loras"),
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "ATELIER_REDIS_URL": settings.redis_url or "",
        "ATELIER_DATABASE_URL": settings.database_url or "",
        "ATELIER_BLOB_URL": settings.blob_url,
        "ATELIER_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "ATELIER_S3_REGION": settings.s3_region or "",
        "ATELIER_S3_ACCESS_KEY_ID": settings.secret("s3_access_key_id") or "",
        "ATELIER_S3_SECRET_ACCESS_KEY": settings.secret("s3_secret_access_key") or "",
        "ATELIER_POLL_DELAY": "0.001",
    }


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@pytest.mark.slow
async def test_a_killed_training_job_resumes_on_another_machine_from_its_stored_checkpoint(
    s3_runtime, dataset_zip: bytes, tmp_path: Path
) -> None:
    from engine.training import checkpoint_step

    runtime = s3_runtime
    tenant, queued = await _request_long_training(runtime, dataset_zip, "fleet", "nomad")
    key = checkpoint_key(queued.job_id)
    machine_a, machine_b = tmp_path / "machine-a", tmp_path / "machine-b"
    machine_a.mkdir()
    machine_b.mkdir()
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    with log_a.open("w") as log:
        first = start_worker(
            "--queues", "train", cwd=machine_a, env=_machine_env(runtime.settings, machine_a), stdout=log
        )
        try:
            deadline = time.monotonic() + 120
            while not await runtime.blobs.exists(key):
                assert first.poll() is None, _tail(log_a)
                assert time.monotonic() < deadline, "no checkpoint was stored"
                await asyncio.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
    assert (machine_a / "data" / "training" / queued.job_id / "checkpoints" / "checkpoint.pt").is_file()
    stored = tmp_path / "stored.pt"
    stored.write_bytes(await runtime.blobs.get(key))
    stored_step = checkpoint_step(stored)
    assert 10 <= stored_step < 150 and stored_step % 10 == 0
    shutil.rmtree(machine_a)  # that machine is gone, and its disk with it
    await runtime.redis.delete(in_progress_key_prefix + queued.job_id)  # its lease lapses now

    with log_b.open("w") as log:
        second = start_worker(
            "--queues",
            "train",
            "--burst",
            cwd=machine_b,
            env=_machine_env(runtime.settings, machine_b),
            stdout=log,
        )
        try:
            await asyncio.get_running_loop().run_in_executor(None, second.wait, 300)
        finally:
            if second.poll() is None:
                second.kill()
    assert second.returncode == 0, _tail(log_b)
    resumed = [
        data["step"]
        async for event, data in events.follow(runtime.redis, queued.job_id)
        if event == "resumed"
    ]
    print(f"\nkilled on one machine after step {stored_step} was stored; the other resumed at {resumed}")
    assert resumed == [stored_step]
    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2, job.error
    lora = await LoraModel.get(tenant=tenant, name="nomad")
    assert lora.status == LoraStatus.READY and await runtime.blobs.exists(lora.weights_key)
    assert not await runtime.blobs.exists(key)  # the checkpoint is deleted once the job is done
    assert not (machine_b / "data" / "training" / queued.job_id).exists()
