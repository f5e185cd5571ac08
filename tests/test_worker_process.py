"""A real `atelier worker` process serving a real Redis and PostgreSQL, with the CLI as the front-end.

The CLI sees the worker's heartbeat and does not start its own; progress and the result reach it through the
job's event stream. The worker's /healthz and /metrics answer on the configured port.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest_asyncio
from redis import Redis

from tests.support import atelier_env, free_port, redis_url, run_atelier, worker_process

REDIS_URL = redis_url(2)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest_asyncio.fixture(loop_scope="session")
async def env(tmp_path: Path, models_dir: Path, postgres_databases) -> dict[str, str]:
    Redis.from_url(REDIS_URL).flushdb()
    return atelier_env(
        {
            "ATELIER_REDIS_URL": REDIS_URL,
            "ATELIER_DATABASE_URL": await postgres_databases("atelier_test_worker"),
            "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_MODEL_CACHE_DIR": str(models_dir),
            "ATELIER_METRICS_PORT": str(free_port()),
        }
    )


def test_cli_uses_a_running_worker_which_reports_health_and_metrics(
    env: dict[str, str], tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{env['ATELIER_METRICS_PORT']}"
    with worker_process(env, tmp_path, "atelier:queue", start_s=60):
        assert _get(f"{base}/healthz") == (200, "ok")

        result = run_atelier("imagine", "a red fox", "--seed", "3", "--steps", "3", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / result.stdout.split()[-1]).exists()

        status, metrics = _get(f"{base}/metrics")
        assert status == 200
        assert 'atelier_images_total{model="tiny",status="succeeded"} 1.0' in metrics
        assert 'atelier_generation_seconds_count{kind="imagine",model="tiny"} 1.0' in metrics
        assert 'atelier_queue_length{queue="atelier:queue"}' in metrics
    # Stopped cleanly: its heartbeat is gone, so the next CLI will start its own worker.
    assert Redis.from_url(REDIS_URL).keys("atelier:worker:*") == []


def test_a_stale_heartbeat_from_a_dead_worker_does_not_leave_the_cli_waiting(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A worker killed with SIGKILL leaves its heartbeat for a few seconds; the CLI must not wait on it forever.
    Redis.from_url(REDIS_URL).set("atelier:worker:atelier:queue:dead", "gone:1", ex=4)
    result = run_atelier("imagine", "a red fox", "--seed", "3", "--steps", "2", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / result.stdout.split()[-1]).exists()
