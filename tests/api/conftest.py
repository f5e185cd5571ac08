"""The HTTP API's rig: a real `atelier api` process and a real `atelier worker` process on this area's own
services (Redis database 4, PostgreSQL `atelier_test_api`, a blob folder), the tiny models, and helpers to make
keys through the real CLI and to talk HTTP to the API with aiohttp. Tenants are fresh per test (random ids), so
tests share the session's processes without seeing each other's jobs, keys or buckets."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import redis

from engine.registry import Registry
from engine.tiny import ensure_built
from storage.db import close_db, init_db
from tests.support import (
    api_process,
    free_port,
    redis_url,
    run_atelier,
    service_env,
    worker_process,
)

REDIS_URL = redis_url(4)  # this area's database on the run's Redis
QUEUE = "atelier:test-api"
TINY = [
    "tiny",
    "tiny-strict",
    "tiny-inpaint",
]  # diffusers presets; upscalers are built by the worker on first use
KEY_BURST, KEY_RATE = 25, 0.5  # the API process's per-key bucket: small enough to exhaust in a test


@pytest.fixture(scope="session")
def api_models(models_dir: Path) -> Path:
    registry = Registry.load()
    for name in TINY:
        ensure_built(registry.get(name), models_dir)
    return models_dir


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_database_url(postgres_databases) -> str:
    return await postgres_databases("atelier_test_api")


@dataclass(frozen=True)
class Rig:
    """This area's processes: the API at `url`, the worker's /metrics at `worker_metrics`."""

    url: str
    env: dict[str, str]
    root: Path
    worker_metrics: str
    redis_url: str
    database_url: str


@pytest.fixture(scope="package")
def rig(tmp_path_factory: pytest.TempPathFactory, api_models: Path, api_database_url: str) -> Iterator[Rig]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    root = tmp_path_factory.mktemp("api-services")
    env = service_env(
        root, models_dir=api_models, redis_url=REDIS_URL, database_url=api_database_url, queue_name=QUEUE
    )
    port, metrics_port = free_port(), free_port()
    env |= {
        "ATELIER_API_HOST": "127.0.0.1",
        "ATELIER_API_PORT": str(port),
        "ATELIER_API_KEY_BURST": str(KEY_BURST),
        "ATELIER_API_KEY_RATE": str(KEY_RATE),
        # The address bucket is everyone's here (all tests come from 127.0.0.1): out of the way, except in the
        # test that sets it on an app of its own.
        "ATELIER_API_ADDRESS_BURST": "100000",
        "ATELIER_API_ADDRESS_RATE": "10000",
        "ATELIER_MAX_BATCH": "1",  # one job per engine call: the same pixels as the CLI's job, by construction
    }
    try:
        with (
            worker_process(env | {"ATELIER_METRICS_PORT": str(metrics_port)}, root, QUEUE),
            api_process(env, root) as url,
        ):
            yield Rig(url, env, root, f"http://127.0.0.1:{metrics_port}/metrics", REDIS_URL, api_database_url)
    finally:
        client.flushdb()
        client.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def database(rig: Rig) -> AsyncIterator[str]:
    """This test process's own connection to the rig's database (to read jobs, images and the ledger)."""
    await init_db(rig.database_url)
    yield rig.database_url
    await close_db()


def new_tenant() -> str:
    return f"discord:{secrets.randbelow(10**12)}"


def create_key(rig: Rig, tenant: str, name: str = "test") -> str:
    """A new key of `tenant` through the real CLI (`atelier admin apikey create`): its last line."""
    result = run_atelier("admin", "apikey", "create", tenant, "--name", name, cwd=rig.root, env=rig.env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def read_sse(response: aiohttp.ClientResponse, within_s: float = 120) -> list[tuple[str, dict]]:
    """Every event of an SSE response until it ends (bounded by `within_s`)."""
    import json

    found: list[tuple[str, dict]] = []
    name, data = None, []
    async with asyncio.timeout(within_s):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
            elif line == "" and name is not None:
                found.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return found


async def wait_for_job(
    http: aiohttp.ClientSession, rig: Rig, key: str, job_id: str, within_s: float = 120
) -> dict:
    """The job once it has ended, followed through its SSE stream (no polling): its `end` event."""
    async with http.get(f"{rig.url}/v1/jobs/{job_id}/events", headers=bearer(key)) as response:
        assert response.status == 200, await response.text()
        found = await read_sse(response, within_s)
    assert found and found[-1][0] == "end", found
    return found[-1][1]
