"""A real `atelier worker` process serving a real Redis and PostgreSQL, with the CLI as the front-end.

The CLI sees the worker's heartbeat and does not start its own; progress and the result reach it through the
job's event stream. The worker's /healthz and /metrics answer on the configured port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio
from redis import Redis

REDIS_URL = "redis://127.0.0.1:6379/2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest_asyncio.fixture(loop_scope="session")
async def env(tmp_path: Path, models_dir: Path, postgres_databases) -> dict[str, str]:
    Redis.from_url(REDIS_URL).flushdb()
    base = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    return {
        **base,
        "ATELIER_REDIS_URL": REDIS_URL,
        "ATELIER_DATABASE_URL": await postgres_databases("atelier_test_worker"),
        "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
        "ATELIER_TINY_MODELS": "1",
        "ATELIER_MODEL_CACHE_DIR": str(models_dir),
        "ATELIER_METRICS_PORT": str(_free_port()),
    }


def test_cli_uses_a_running_worker_which_reports_health_and_metrics(env: dict[str, str], tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "atelier", "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{env['ATELIER_METRICS_PORT']}"
    try:
        deadline = time.monotonic() + 60
        while Redis.from_url(REDIS_URL).keys("atelier:worker:*") == []:
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "the worker never beat its heart"
            time.sleep(0.1)
        assert _get(f"{base}/healthz") == (200, "ok")

        result = subprocess.run(
            [sys.executable, "-m", "atelier", "imagine", "a red fox", "--seed", "3", "--steps", "3"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert (tmp_path / result.stdout.split()[-1]).exists()

        status, metrics = _get(f"{base}/metrics")
        assert status == 200
        assert 'atelier_images_total{model="tiny",status="succeeded"} 1.0' in metrics
        assert 'atelier_generation_seconds_count{kind="imagine",model="tiny"} 1.0' in metrics
        assert 'atelier_queue_length{queue="atelier:queue"}' in metrics
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    # Stopped cleanly: its heartbeat is gone, so the next CLI will start its own worker.
    assert Redis.from_url(REDIS_URL).keys("atelier:worker:*") == []


def test_a_stale_heartbeat_from_a_dead_worker_does_not_leave_the_cli_waiting(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A worker killed with SIGKILL leaves its heartbeat for a few seconds; the CLI must not wait on it forever.
    Redis.from_url(REDIS_URL).set("atelier:worker:atelier:queue:dead", "gone:1", ex=4)
    result = subprocess.run(
        [sys.executable, "-m", "atelier", "imagine", "a red fox", "--seed", "3", "--steps", "2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / result.stdout.split()[-1]).exists()
