"""API jobs on a queue no worker serves until the test says so, with the API app in this process (on a real TCP
port, spoken to by aiohttp) and in-process arq workers that have no "api" replier: a queued job's cancel (SSE
told at once, refunded, the worker later drops it), an API job finished and recorded by such a worker, the CLI's
own-jobs worker leaving API jobs alone, Idempotency-Key, and the per-address bucket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from atelier.cli_api import api_services
from atelier.runtime import Runtime
from atelier.settings import Settings
from bots.api.app import build_app
from bots.api.keys import create_key
from bots.api.ratelimit import bucket_key
from bots.api.services import RateLimits, parse_networks
from jobs import events
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from jobs.worker import create_worker
from storage.models import Image, Job, JobStatus, get_or_create_tenant, get_or_create_user
from storage.quota_models import LedgerKind, QuotaLedger, QuotaReservation, ReservationState
from tests.api.conftest import Rig, bearer, new_tenant, read_sse
from tests.support import drain, free_port, run_burst_worker

LOCAL_QUEUE = "atelier:test-api-local"  # served only by the workers these tests run
REQUEST = {"prompt": "a kite", "model": "tiny", "steps": 2, "seed": 5}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def local_runtime(rig: Rig, database: str) -> AsyncIterator[Runtime]:
    settings = Settings(
        redis_url=rig.redis_url,
        database_url=rig.database_url,
        blob_url=rig.env["ATELIER_BLOB_URL"],
        model_cache_dir=rig.env["ATELIER_MODEL_CACHE_DIR"],
        data_dir=rig.root / "local-data",
        tiny_models=True,
        queue_name=LOCAL_QUEUE,
        max_batch=1,
    )
    async with Runtime.open(settings) as runtime:
        yield runtime
    await database_again(rig)


async def database_again(rig: Rig) -> None:
    """Leaving the runtime closed this process's database; the session's other tests still read it."""
    from storage.db import init_db

    await init_db(rig.database_url)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session")
async def local_api(local_runtime: Runtime) -> AsyncIterator[str]:
    runner, url = await serve(build_app(api_services(local_runtime.settings, local_runtime)))
    yield url
    await runner.cleanup()


async def test_a_queued_job_is_cancelled_at_once_refunded_and_later_dropped_by_a_worker(
    local_runtime: Runtime, local_api: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    async with http.post(f"{local_api}/v1/images", json=REQUEST, headers=bearer(key)) as response:
        assert response.status == 202
        job_id = (await response.json())["id"]
    async with http.get(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        job = await response.json()
    assert job["status"] == "queued" and job["position"] == 1 and job["eta_s"] > 0
    async with http.get(f"{local_api}/v1/queue", headers=bearer(key)) as response:
        assert (await response.json())["yours"] == {"queued": 1, "running": 0}

    async def follow() -> list[tuple[str, dict]]:
        async with http.get(f"{local_api}/v1/jobs/{job_id}/events", headers=bearer(key)) as response:
            return await read_sse(response, within_s=60)

    following = asyncio.create_task(follow())
    async with http.delete(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["outcome"] == "cancelled"
    found = await following  # ends without any worker: the cancel is on the job's stream
    assert [name for name, _ in found] == ["queued", "cancelled", "end"]
    assert found[-1][1]["status"] == "cancelled"
    reservation = await QuotaReservation.get(job_id=job_id)
    assert reservation.state == ReservationState.REFUNDED
    async with http.delete(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        assert response.status == 409 and (await response.json())["error"]["code"] == "job_finished"

    # A worker with no "api" replier drops it, runs nothing, and records that its end was told.
    await run_burst_worker(local_runtime.worker_services(), LOCAL_QUEUE)
    job_row = await Job.get(id=job_id)
    assert job_row.status == JobStatus.CANCELLED and job_row.started_at is None
    assert job_row.delivered_at is not None
    assert await QuotaLedger.filter(job_id=job_id, kind=LedgerKind.REFUND).count() == 1


async def test_a_worker_without_an_api_replier_finishes_records_and_delivers_api_jobs(
    local_runtime: Runtime, local_api: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    headers = bearer(key) | {"Idempotency-Key": "order-17"}
    async with http.post(f"{local_api}/v1/images", json=REQUEST | {"count": 2}, headers=headers) as response:
        assert response.status == 202
        job_id = (await response.json())["id"]
    async with http.post(f"{local_api}/v1/images", json=REQUEST | {"count": 2}, headers=headers) as response:
        assert response.status == 202 and (await response.json())["id"] == job_id  # the same request, retried
    services = local_runtime.worker_services()
    assert "api" not in services.repliers
    await run_burst_worker(services, LOCAL_QUEUE)

    row = await Job.get(id=job_id)
    assert row.status == JobStatus.SUCCEEDED and row.delivered_at is not None
    assert row.reply_target == {
        "platform": "api",
        "data": {"api_key_id": row.reply_target["data"]["api_key_id"]},
    }
    assert (await QuotaReservation.get(job_id=job_id)).state == ReservationState.SETTLED
    async with http.get(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        job = await response.json()
    assert job["status"] == "succeeded" and [i["seed"] for i in job["images"]] == [5, 6]
    for image in job["images"]:
        async with http.get(f"{local_api}{image['url']}", headers=bearer(key)) as response:
            data = await response.read()
        stored = await Image.get(id=image["id"])
        assert data == await local_runtime.blobs.get(stored.blob_key)

    # A day later its event stream has expired: following it gives the job's end at once.
    await local_runtime.redis.delete(events.stream_key(job_id))
    async with http.get(f"{local_api}/v1/jobs/{job_id}/events", headers=bearer(key)) as response:
        found = await read_sse(response, within_s=10)
    assert [name for name, _ in found] == ["end"] and found[0][1]["images"] == job["images"]


async def test_the_clis_own_jobs_worker_leaves_api_jobs_in_the_queue(
    local_runtime: Runtime, local_api: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    async with http.post(
        f"{local_api}/v1/images", json=REQUEST | {"seed": 9}, headers=bearer(key)
    ) as response:
        api_job = (await response.json())["id"]
    runtime = local_runtime
    tenant = await get_or_create_tenant("cli", "local")
    spec = imagine_spec(runtime.registry, prompt="a cli job", model="tiny", steps=2, seed=1, tiny=True)
    cli_job = (
        await enqueue(
            runtime.redis,
            spec,
            request_id=f"cli:test-api:{api_job}",
            reply_target=ReplyTarget(platform="cli"),
            queue_name=LOCAL_QUEUE,
            tenant=tenant,
            user=await get_or_create_user(tenant, "local"),
        )
    ).job_id
    own = create_worker(
        runtime.worker_services(),
        queue_name=LOCAL_QUEUE,
        only_jobs={cli_job},
        handle_signals=False,
        poll_delay=0.001,
    )
    await drain(own)  # a burst worker: it stops once its own job has run
    assert (await Job.get(id=cli_job)).status == JobStatus.SUCCEEDED
    assert (await Job.get(id=api_job)).status == JobStatus.QUEUED
    redis = Redis.from_url(runtime.settings.redis_url)
    assert await redis.zscore(LOCAL_QUEUE, api_job) is not None
    await redis.aclose()
    await run_burst_worker(runtime.worker_services(), LOCAL_QUEUE)  # the next worker that serves the queue
    assert (await Job.get(id=api_job)).status == JobStatus.SUCCEEDED


async def test_the_client_address_bucket_limits_requests_with_bad_keys_too(
    local_runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    redis = Redis.from_url(local_runtime.settings.redis_url)
    address_bucket = bucket_key("addr", "127.0.0.1")
    await redis.delete(address_bucket)
    services = replace(
        api_services(local_runtime.settings, local_runtime),
        limits=RateLimits(key_rate=100, key_burst=100, address_rate=0.2, address_burst=3),
    )
    runner, url = await serve(build_app(services))
    try:
        statuses = []
        for _ in range(4):
            async with http.get(f"{url}/v1/models", headers=bearer("atl_guessed")) as response:
                statuses.append(response.status)
                last = response
                body = await response.json()
        assert statuses == [401, 401, 401, 429]
        assert body["error"]["code"] == "rate_limited"
        assert 1 <= int(last.headers["Retry-After"]) <= 5  # one token at 0.2 a second
        assert last.headers["RateLimit-Limit"] == "3" and last.headers["RateLimit-Remaining"] == "0"
        _, key = await create_key(new_tenant())
        async with http.get(f"{url}/v1/models", headers=bearer(key)) as response:
            assert response.status == 429  # a good key from the same address waits too
    finally:
        await runner.cleanup()
        await redis.delete(address_bucket)
        await redis.aclose()


async def test_a_tenants_own_lora_is_usable_by_its_keys_only(
    local_runtime: Runtime, local_api: str, http: aiohttp.ClientSession
) -> None:
    from quotas.policy import tenant_for
    from storage.lora_models import LoraModel, LoraStatus

    mine, theirs = new_tenant(), new_tenant()
    lora = await LoraModel.create(
        tenant=await tenant_for(mine), name="brush", family="sd15", base_model="tiny", trigger="brush tok",
        status=LoraStatus.READY, weights_key="loras/brush.safetensors", steps=10,
    )  # fmt: skip
    body = REQUEST | {"loras": [{"name": "brush", "weight": 0.7}]}
    _, other_key = await create_key(theirs)
    async with http.post(f"{local_api}/v1/images", json=body, headers=bearer(other_key)) as response:
        assert response.status == 422 and (await response.json())["error"]["code"] == "unknown_lora"
    _, key = await create_key(mine)
    async with http.post(f"{local_api}/v1/images", json=body, headers=bearer(key)) as response:
        assert response.status == 202
        job_id = (await response.json())["id"]
    assert (await Job.get(id=job_id)).spec["loras"] == [[f"brush@{lora.id}", 0.7]]  # scoped to this tenant's
    async with http.delete(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        assert response.status == 200
    await run_burst_worker(local_runtime.worker_services(), LOCAL_QUEUE)  # drop it


async def test_a_running_job_stops_after_its_current_step_when_cancelled(
    local_runtime: Runtime, local_api: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    body = REQUEST | {"steps": 50, "seed": 77}  # long enough on a CPU to be caught running
    async with http.post(f"{local_api}/v1/images", json=body, headers=bearer(key)) as response:
        job_id = (await response.json())["id"]
    worker = asyncio.create_task(run_burst_worker(local_runtime.worker_services(), LOCAL_QUEUE))
    try:
        async with http.get(f"{local_api}/v1/jobs/{job_id}/events", headers=bearer(key)) as events:
            current = None
            async with asyncio.timeout(120):
                async for raw in events.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        current = line.removeprefix("event: ")
                    elif not line and current == "progress":
                        break  # a whole progress event: it is running
            async with http.delete(f"{local_api}/v1/jobs/{job_id}", headers=bearer(key)) as response:
                assert response.status == 202, await response.text()
                assert (await response.json())["outcome"] == "stopping"
            rest = await read_sse(events, within_s=120)
        assert [name for name, _ in rest][-2:] == ["failed", "end"]
        assert rest[-1][1]["status"] == "cancelled"
        assert "Cancelled by its owner after step" in rest[-2][1]["message"]
    finally:
        await asyncio.wait_for(worker, 120)
    row = await Job.get(id=job_id)
    assert row.status == JobStatus.CANCELLED and row.delivered_at is not None
    assert (await QuotaReservation.get(job_id=job_id)).state == ReservationState.REFUNDED


async def test_two_api_processes_share_one_bucket_per_key_exactly_under_concurrency(
    local_runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    """Nothing that matters is kept per process: two apps (as two `atelier api` processes behind a load
    balancer) take from the same bucket in Redis, atomically: 24 requests at once with a burst of 5 admit 5."""
    limits = RateLimits(key_rate=0.001, key_burst=5, address_rate=1000, address_burst=100000)
    services = replace(api_services(local_runtime.settings, local_runtime), limits=limits)
    servers = [await serve(build_app(services)) for _ in range(2)]
    try:
        _, key = await create_key(new_tenant())

        async def one(i: int) -> int:
            async with http.get(f"{servers[i % 2][1]}/v1/models", headers=bearer(key)) as response:
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(24)))
        assert sorted(statuses) == [200] * 5 + [429] * 19
    finally:
        for runner, _ in servers:
            await runner.cleanup()


async def test_stopping_the_server_ends_open_event_streams_at_once(
    local_runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    """A stopping `atelier api` does not wait for its followers to leave (aiohttp would wait a minute)."""
    runner, url = await serve(build_app(api_services(local_runtime.settings, local_runtime)))
    _, key = await create_key(new_tenant())
    async with http.post(f"{url}/v1/images", json=REQUEST | {"seed": 31}, headers=bearer(key)) as response:
        job_id = (await response.json())["id"]
    async with http.get(f"{url}/v1/jobs/{job_id}/events", headers=bearer(key)) as events_response:
        first = await events_response.content.readline()
        assert first == b"event: queued\n"
        async with asyncio.timeout(10):
            await runner.cleanup()
            rest = await events_response.content.read()
    assert b"event: end" not in rest  # closed, not ended: the job is still queued
    assert (await Job.get(id=job_id)).status == JobStatus.QUEUED
    await run_burst_worker(local_runtime.worker_services(), LOCAL_QUEUE)


async def test_behind_a_trusted_proxy_the_forwarded_address_has_the_bucket(
    local_runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    redis = Redis.from_url(local_runtime.settings.redis_url)
    clients = ["203.0.113.5", "203.0.113.6", "127.0.0.1"]
    await redis.delete(*(bucket_key("addr", address) for address in clients))
    base = api_services(local_runtime.settings, local_runtime)
    limits = RateLimits(key_rate=100, key_burst=100, address_rate=0.01, address_burst=2)
    trusting = await serve(
        build_app(replace(base, limits=replace(limits, trusted_proxies=parse_networks("127.0.0.0/8"))))
    )
    plain = await serve(build_app(replace(base, limits=limits)))
    try:

        async def status(url: str, forwarded: str) -> int:
            headers = {"X-Forwarded-For": forwarded, **bearer("atl_guessed")}
            async with http.get(f"{url}/v1/models", headers=headers) as response:
                return response.status

        # From the trusted proxy (this test, on 127.0.0.1), the address it appended is the client's; what the
        # client itself wrote before it (a spoofed first entry) does not matter.
        url = trusting[1]
        assert [await status(url, f"10.9.9.{i}, 203.0.113.5") for i in range(3)] == [401, 401, 429]
        assert await status(url, "203.0.113.6") == 401  # another client behind the proxy: its own bucket
        # Without trust the header is ignored: every request is the peer's (127.0.0.1).
        url = plain[1]
        assert [await status(url, f"198.51.100.{i}") for i in range(3)] == [401, 401, 429]
    finally:
        for runner, _ in (trusting, plain):
            await runner.cleanup()
        await redis.delete(*(bucket_key("addr", address) for address in clients))
        await redis.aclose()
