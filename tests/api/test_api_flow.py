"""The issue's Done-when, through a real HTTP client against a real `atelier api` and `atelier worker` on real
Redis, PostgreSQL and the tiny models: a key made by the CLI, an image submitted, its events followed to the end,
its PNG equal to `atelier imagine`'s with the same seed, model, size and steps; the same request again answered
from the cache with no new job, no GPU work and no charge; another tenant's key told 404; the key's rate limit
exhausted into a 429 with Retry-After."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from quotas.policy import tenant_for
from storage.models import Image, Job
from storage.quota_models import QuotaCounter, QuotaLedger
from tests.api.conftest import KEY_BURST, QUEUE, Rig, bearer, create_key, new_tenant, read_sse, wait_for_job
from tests.support import replayed_content, run_atelier

REQUEST = {
    "prompt": "a lighthouse at dawn",
    "seed": 1234,
    "model": "tiny",
    "width": 64,
    "height": 64,
    "steps": 3,
}


async def worker_jobs_done(http: aiohttp.ClientSession, rig: Rig) -> float:
    """The worker's own count of imagine jobs it finished (its Prometheus /metrics)."""
    async with http.get(rig.worker_metrics) as response:
        text = await response.text()
    found = re.search(
        r'^atelier_jobs_total\{kind="imagine",model="tiny",status="succeeded"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_submit_follow_fetch_cache_isolation_and_rate_limit(
    rig: Rig, database: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    tenant_ref = new_tenant()
    key = create_key(rig, tenant_ref)
    tenant = await tenant_for(tenant_ref)

    # Submit: 202 with the job's id, queued, a cache miss.
    async with http.post(f"{rig.url}/v1/images", json=REQUEST, headers=bearer(key)) as response:
        assert response.status == 202, await response.text()
        assert response.headers["X-Atelier-Cache"] == "miss"
        submitted = await response.json()
    job_id = submitted["id"]
    assert submitted["status"] in ("queued", "running", "succeeded")
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"

    # Follow its Server-Sent Events to the end: the chat repliers' events, then `end` with the job.
    async with http.get(f"{rig.url}/v1/jobs/{job_id}/events", headers=bearer(key)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        found = await read_sse(response)
    names = [name for name, _ in found]
    assert names[0] == "queued" and names[-2:] == ["result", "end"], names
    assert [d["step"] for n, d in found if n == "progress"] == [1, 2, 3]
    ended = found[-1][1]
    assert ended["status"] == "succeeded" and len(ended["images"]) == 1

    # The job as GET shows it, and its PNG from the URL it gives.
    async with http.get(f"{rig.url}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        job = await response.json()
    assert job["status"] == "succeeded" and job["position"] is None
    [image] = job["images"]
    async with http.get(f"{rig.url}{image['url']}", headers=bearer(key)) as response:
        assert response.status == 200 and response.content_type == "image/png"
        png = await response.read()
    assert png.startswith(b"\x89PNG") and len(png) == image["size_bytes"]

    # The same seed, model, size and steps from the CLI: the same pixels (both are the worker's PNG; each file
    # carries its own C2PA signature, jobs.provenance).
    cli = run_atelier(
        "imagine", REQUEST["prompt"], "--seed", "1234", "--model", "tiny", "--size", "64x64", "--steps", "3",
        "--out", str(tmp_path / "cli"), cwd=tmp_path, env=rig.env,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    [cli_path] = [Path(line) for line in cli.stdout.split()]
    cli_png = (cli_path if cli_path.is_absolute() else tmp_path / cli_path).read_bytes()
    assert replayed_content(cli_png) == replayed_content(png)

    # Again: a cache hit, answered with the succeeded job at once; nothing enqueued, created or charged.
    redis = Redis.from_url(rig.redis_url)
    ledger_before = await QuotaLedger.filter(tenant_id=tenant.id).count()
    counters_before = await QuotaCounter.filter(tenant_id=tenant.id).values_list("metric", "period", "used")
    done_before = await worker_jobs_done(http, rig)
    queued_before = set(await redis.zrange(QUEUE, 0, -1))  # jobs just finished may still be leaving it
    async with http.post(f"{rig.url}/v1/images", json=REQUEST, headers=bearer(key)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["X-Atelier-Cache"] == "hit"
        hit = await response.json()
    assert hit["id"] == job_id and hit["status"] == "succeeded" and hit["images"] == job["images"]
    assert await Job.filter(tenant_id=tenant.id).count() == 1
    assert await QuotaLedger.filter(tenant_id=tenant.id).count() == ledger_before
    assert (
        await QuotaCounter.filter(tenant_id=tenant.id).values_list("metric", "period", "used")
        == counters_before
    )
    assert set(await redis.zrange(QUEUE, 0, -1)) <= queued_before  # nothing new for a worker to do
    # `"cache": false` makes it a new job; once the worker has finished that one, its count went up by exactly
    # one: the hit before it made no GPU work.
    async with http.post(
        f"{rig.url}/v1/images", json=REQUEST | {"cache": False}, headers=bearer(key)
    ) as response:
        assert response.status == 202 and response.headers["X-Atelier-Cache"] == "miss"
        fresh = await response.json()
    assert fresh["id"] != job_id
    assert (await wait_for_job(http, rig, key, fresh["id"]))["status"] == "succeeded"
    assert await worker_jobs_done(http, rig) == done_before + 1
    # A hit without an explicit seed is impossible: a seedless request is always a new job.
    unseeded = {k: v for k, v in REQUEST.items() if k != "seed"}
    async with http.post(f"{rig.url}/v1/images", json=unseeded, headers=bearer(key)) as response:
        assert response.status == 202 and response.headers["X-Atelier-Cache"] == "miss"
        seedless = await response.json()
    await wait_for_job(http, rig, key, seedless["id"])
    async with http.post(f"{rig.url}/v1/images", json=unseeded, headers=bearer(key)) as response:
        assert response.status == 202 and response.headers["X-Atelier-Cache"] == "miss"

    # Another tenant's key: the jobs, their events, the image and the cancel are all 404, and its identical
    # request is no hit of this tenant's cache.
    other = create_key(rig, new_tenant())
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", image["url"]),
    ]:
        async with http.request(method, f"{rig.url}{path}", headers=bearer(other)) as response:
            assert response.status == 404, (method, path)
            assert (await response.json())["error"]["code"] in ("job_not_found", "image_not_found")
    async with http.post(f"{rig.url}/v1/images", json=REQUEST, headers=bearer(other)) as response:
        assert response.status == 202 and response.headers["X-Atelier-Cache"] == "miss"
        assert (await response.json())["id"] != job_id
    assert await Image.filter(job_id=job_id).count() == 1

    # Exhaust the key's bucket: 429 with Retry-After and the RateLimit headers, then served again once the
    # bucket has a token (Retry-After later).
    refused = None
    for _ in range(2 * KEY_BURST):  # refills at 0.5 a second meanwhile, however slow the machine
        async with http.get(f"{rig.url}/v1/queue", headers=bearer(key)) as response:
            if response.status == 429:
                refused = response
                body = await response.json()
                break
            assert response.status == 200
            assert int(response.headers["RateLimit-Remaining"]) >= 0
    assert refused is not None, "the key's bucket never ran out"
    assert body["error"]["code"] == "rate_limited"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 3
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == str(KEY_BURST)
    assert refused.headers["RateLimit-Policy"] == f"{KEY_BURST};w={round(KEY_BURST / 0.5)}"
    async with http.get(f"{rig.url}/v1/queue", headers=bearer(other)) as response:
        assert response.status == 200  # another key's bucket is its own
    await asyncio.sleep(retry_after)
    async with http.get(f"{rig.url}/v1/queue", headers=bearer(key)) as response:
        assert response.status == 200
    await redis.aclose()
