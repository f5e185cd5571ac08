"""A worker SIGKILLed while it runs a job (what the OOM killer or a lost GPU node does), with a second worker on
the same queue: the dead worker's claim lapses within its lease, the other worker runs the job again, the user
gets every image once and is charged once. And when crashes use up a job's tries, the job is failed, refunded
and the user is told, instead of being dropped without a word.

Real processes throughout: two `atelier worker`s and the `atelier imagine` CLI on real Redis (DB 9, a queue of
this run's own) and PostgreSQL; the workers' torch runs on one thread each.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from redis import Redis

from jobs.worker import LEASE_S
from tests.support import WORKER_START_S, atelier_env, redis_url, run_atelier, start_worker, stop_process

REDIS_URL = redis_url(9)


@pytest_asyncio.fixture(loop_scope="session")
async def env(tmp_path: Path, models_dir: Path, postgres_databases) -> dict[str, str]:
    queue = f"atelier:queue:reliability-{uuid.uuid4().hex[:8]}"
    return atelier_env(
        {
            "ATELIER_REDIS_URL": REDIS_URL,
            "ATELIER_DATABASE_URL": await postgres_databases("atelier_test_reliability"),
            "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_QUEUE_NAME": queue,
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(models_dir),
            "ATELIER_DEVICE": "cpu",
            "ATELIER_MAX_BATCH": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )


class Workers:
    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env, self.root = env, root
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, n: int) -> None:
        """Start `n` more workers and wait until every live one beats its heart."""
        new = []
        for _ in range(n):
            log = self.root / f"worker{len(self.procs) + len(new)}.log"
            with log.open("w") as out:
                new.append((start_worker(cwd=self.root, env=self.env, stdout=out), log))
        self.procs += new
        redis = Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + WORKER_START_S
        pattern = f"atelier:worker:{self.env['ATELIER_QUEUE_NAME']}:*"
        while len(list(redis.scan_iter(match=pattern))) < len([p for p, _ in self.procs if p.poll() is None]):
            assert time.monotonic() < deadline, self.logs()
            assert all(p.poll() is None for p, _ in new), self.logs()
            time.sleep(0.1)
        redis.close()

    def running(self, job_id: str) -> subprocess.Popen | None:
        """The worker whose log says it started `job_id`."""
        for proc, log in self.procs:
            if f"{job_id}:imagine" in log.read_text() and proc.poll() is None:
                return proc
        return None

    def imagine_and_kill_mid_steps(self, *args: str) -> tuple[subprocess.Popen, str, subprocess.Popen]:
        """Start `atelier imagine "a fox" ARGS`, wait until a worker runs its job and reports a denoising step,
        and SIGKILL that worker. Returns the CLI's process, the job id and the killed worker."""
        command = [sys.executable, "-m", "atelier", "imagine", "a fox", *args]
        cli = subprocess.Popen(
            command, cwd=self.root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        redis = Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + 120
        while not (queued := redis.zrange(self.env["ATELIER_QUEUE_NAME"], 0, -1)):  # the CLI's only job
            assert time.monotonic() < deadline and cli.poll() is None, cli.stderr.read() if cli.poll() else ""
            time.sleep(0.05)
        job_id = queued[0].decode()
        while (victim := self.running(job_id)) is None:
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.05)
        stream = f"atelier:events:{job_id}"
        while not any(b"progress" in fields.get(b"event", b"") for _, fields in redis.xrange(stream)):
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        redis.close()
        return cli, job_id, victim

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} ---\n{log.read_text()[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            stop_process(proc)


def test_a_job_whose_worker_is_killed_mid_steps_finishes_on_the_other_worker_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    workers = Workers(env, tmp_path)
    workers.start(2)
    try:
        cli, job_id, victim = workers.imagine_and_kill_mid_steps(
            *"--count 4 --size 512x512 --hires 1 --steps 50".split()
        )
        killed_at = time.monotonic()

        stdout, stderr = cli.communicate(timeout=180)
        finished_after = time.monotonic() - killed_at
        assert cli.returncode == 0, stderr[-3000:] + workers.logs()
        paths = stdout.split()
        assert len(paths) == 4 and len(set(paths)) == 4, stdout  # four images, each printed once
        assert all((tmp_path / p).read_bytes().startswith(b"\x89PNG") for p in paths)
        survivor = next(p for p, _ in workers.procs if p is not victim)
        assert survivor.poll() is None
        retried = next(log for p, log in workers.procs if p is survivor).read_text()
        assert re.search(rf"{job_id}:imagine\(.*\) try=2", retried), retried[-3000:]
        print(
            f"\nkilled mid-steps; the other worker finished the job {finished_after:.1f} s later "
            f"(lease {LEASE_S:.0f} s)"
        )

        usage = run_atelier("admin", "usage", "cli:local", cwd=tmp_path, env=env)
        assert usage.returncode == 0, usage.stderr
        assert re.match(r"cli:local, [-0-9]+: 4 images, ", usage.stdout), usage.stdout
    finally:
        workers.stop()


@pytest.mark.parametrize("tries", [1])
def test_a_job_whose_tries_are_used_up_by_crashes_is_failed_refunded_and_told(
    env: dict[str, str], tmp_path: Path, tries: int
) -> None:
    env = {**env, "ATELIER_MAX_TRIES": str(tries)}
    workers = Workers(env, tmp_path)
    workers.start(1)
    try:
        cli, _, _ = workers.imagine_and_kill_mid_steps(*"--size 512x512 --hires 1 --steps 50".split())
        workers.start(1)  # a new worker finds the job's one try used: arq gives up on it

        stdout, stderr = cli.communicate(timeout=180)
        assert cli.returncode == 1, stderr
        assert "interrupted 1 time by a worker that stopped" in stderr and "nothing was charged" in stderr, (
            stderr
        )
        assert stdout == ""
        usage = run_atelier("admin", "usage", "cli:local", cwd=tmp_path, env=env)
        assert re.match(r"cli:local, [-0-9]+: 0 images, ", usage.stdout), usage.stdout
    finally:
        workers.stop()
