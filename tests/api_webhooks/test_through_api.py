"""Batches and their webhooks through a real `atelier api` and `atelier worker` (Redis database 6, PostgreSQL
`atelier_test_webhooks`, the tiny model), a key made by the CLI, and a local receiver that checks every signature
with `jobs.webhooks.verify` and the secret the CLI printed. The operator allows webhooks to 127.0.0.1 only
(`ATELIER_WEBHOOK_ALLOWED_HOSTS`), so every other internal address is refused as it would be in production."""

from __future__ import annotations

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
from quotas.policy import tenant_for
from storage.api_models import Batch, WebhookDelivery
from storage.models import Job
from storage.quota_models import QuotaReservation
from tests.api_webhooks.conftest import REDIS_URL
from tests.api_webhooks.receiver import Receiver, start_receiver, until
from tests.support import api_process, free_port, run_atelier, service_env, worker_process

QUEUE = "atelier:test-webhooks"
OPTIONS = {"model": "tiny", "width": 64, "height": 64, "steps": 2}


@dataclass(frozen=True)
class Rig:
    url: str
    env: dict[str, str]
    root: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, database_url: str) -> Iterator[Rig]:
    """A worker and an API process for this module only (their sweepers would take the other modules' rows)."""
    ensure_built(Registry.load().get("tiny"), models_dir)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    root = tmp_path_factory.mktemp("webhook-services")
    port = free_port()
    env = (
        service_env(
            root, models_dir=models_dir, redis_url=REDIS_URL, database_url=database_url, queue_name=QUEUE
        )
        | {
            "ATELIER_API_PORT": str(port),
            "ATELIER_API_KEY_BURST": "1000",
            "ATELIER_API_ADDRESS_BURST": "1000",
            "ATELIER_MAX_BATCH": "1",  # one job at a time: a second job of a batch stays queued while the first runs
            "ATELIER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "ATELIER_WEBHOOK_RETRY_S": "0.3",
        }
    )
    try:
        with worker_process(env, root, QUEUE), api_process(env, root) as url:
            yield Rig(url, env, root)
    finally:
        client.flushdb()
        client.close()


@dataclass(frozen=True)
class Client:
    tenant: str
    key: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_client(rig: Rig, *, roomy: bool = True) -> Client:
    """A fresh tenant and its key through the real CLI, which prints the webhook secret and then the key.
    `roomy`: the operator lets it hold 100 unfinished jobs and make 1000 images a day (the free tier allows 3
    and 25 per person, each key counting as one: a batch of 10 would be refused whole, see
    test_a_batch_over_the_unfinished_jobs_limit_is_refused_whole)."""
    tenant = f"discord:{secrets.randbelow(10**12)}"
    if roomy:
        raised = run_atelier(
            "admin", "quota", tenant, "--queued-jobs-per-user", "100", "--concurrent-jobs", "100",
            "--images-per-user-per-day", "1000", "--images-per-day", "1000",
            cwd=rig.root, env=rig.env,
        )  # fmt: skip
        assert raised.returncode == 0, raised.stderr
    made = run_atelier("admin", "apikey", "create", tenant, "--name", "hooks", cwd=rig.root, env=rig.env)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    [secret] = [line.split(": ", 1)[1] for line in lines if line.startswith("webhook signing secret: ")]
    return Client(tenant, lines[-1], secret)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def hooks(rig: Rig) -> AsyncIterator[Receiver]:
    """A receiver whose secret the test sets once it has made its key."""
    got = Receiver()
    runner = await start_receiver(got)
    yield got
    await runner.cleanup()


async def nothing_queued(tenant_ref: str) -> None:
    tenant = await tenant_for(tenant_ref)
    assert await Job.filter(tenant_id=tenant.id).count() == 0
    assert await QuotaReservation.filter(tenant_id=tenant.id).count() == 0
    assert await Batch.filter(tenant_id=tenant.id).count() == 0


async def test_a_batch_of_ten_delivers_each_job_and_the_batch_once_signed(
    rig: Rig, http: aiohttp.ClientSession, hooks: Receiver
) -> None:
    client = new_client(rig)
    hooks.secret = client.secret
    prompts = [f"a lighthouse, study {i}" for i in range(10)]
    body = {"prompts": prompts, **OPTIONS, "seed": 7, "webhook_url": hooks.url("/batch")}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 202, await response.text()
        batch = await response.json()
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert len(batch["jobs"]) == 10 and batch["refused"] == [] and batch["webhook_url"] == hooks.url("/batch")
    job_ids = [job["id"] for job in batch["jobs"]]

    got = await hooks.wait_for(lambda got: any(r.event == "batch.completed" for r in got), within=240)
    assert all(r.signed for r in got)  # every request verified with the secret the CLI printed
    by_event: dict[str, list] = {}
    for r in got:
        by_event.setdefault(r.event, []).append(r)
    assert sorted(r.body["data"]["id"] for r in by_event["job.succeeded"]) == sorted(job_ids)
    assert len({r.webhook_id for r in by_event["job.succeeded"]}) == 10  # one idempotency id per job
    [completed] = by_event["batch.completed"]
    summary = completed.body["data"]
    assert summary["id"] == batch["id"] and summary["status"] == "completed" and summary["finished_at"]
    assert summary["counts"]["succeeded"] == 10 and [j["id"] for j in summary["jobs"]] == job_ids
    assert completed.body["event"] == "batch.completed" and completed.body["id"] == completed.webhook_id

    # A job's payload is the job as GET /v1/jobs/{id} shows it; its image URL serves the PNG to the same key.
    first = next(r.body["data"] for r in by_event["job.succeeded"] if r.body["data"]["id"] == job_ids[0])
    async with http.get(f"{rig.url}/v1/jobs/{job_ids[0]}", headers=client.headers) as response:
        shown = await response.json()
    assert {k: shown[k] for k in ("id", "status", "images", "error")} == {
        k: first[k] for k in ("id", "status", "images", "error")
    }
    assert first["batch_id"] == batch["id"]
    async with http.get(f"{rig.url}{first['images'][0]['url']}", headers=client.headers) as response:
        assert response.status == 200 and (await response.read()).startswith(b"\x89PNG")

    # Every delivery row is delivered, the batch's once: nothing is left to send again.
    ids = [r.webhook_id for r in got]
    await until(lambda: _delivered(set(ids)), within=30, what="every delivery row marked delivered")
    assert await WebhookDelivery.filter(subject=batch["id"]).count() == 1
    assert len(ids) == len(set(ids)) == 11
    async with http.get(f"{rig.url}/v1/batches/{batch['id']}", headers=client.headers) as response:
        shown = await response.json()
    assert shown["status"] == "completed" and shown["counts"]["succeeded"] == 10
    assert shown["finished_at"] == summary["finished_at"]


async def _delivered(ids: set[str]) -> bool:
    return await WebhookDelivery.filter(id__in=list(ids), delivered_at__isnull=False).count() == len(ids)


@pytest.mark.parametrize(
    ("prompt", "code"),
    [("x" * 1001, "out_of_range"), ("a cat\x00", "invalid_value")],
    ids=["too-long", "nul"],
)
async def test_one_bad_prompt_refuses_the_batch_and_queues_nothing(
    rig: Rig, http: aiohttp.ClientSession, hooks: Receiver, prompt: str, code: str
) -> None:
    client = new_client(rig)
    prompts = ["a red fox", "a blue fox", "a green fox", prompt, "a white fox"]
    body = {"prompts": prompts, **OPTIONS, "webhook_url": hooks.url()}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 422
        refusal = (await response.json())["error"]
    assert refusal["field"] == "prompts.3" and refusal["code"] == code, refusal
    await nothing_queued(client.tenant)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:9/hook",  # loopback, though not the operator's one allowed address
        "http://0.0.0.0:9/hook",  # "this host": connecting to it reaches loopback
        "http://[::ffff:10.0.0.1]/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "ftp://127.0.0.1/hook",
        "http://nowhere.invalid/hook",
    ],
)
async def test_a_webhook_to_an_internal_or_bad_url_is_refused_at_submission(
    rig: Rig, http: aiohttp.ClientSession, url: str
) -> None:
    client = new_client(rig)
    for path, body in (
        ("/v1/batches", {"prompts": ["a fox"], **OPTIONS, "webhook_url": url}),
        ("/v1/images", {"prompt": "a fox", **OPTIONS, "webhook_url": url}),
    ):
        async with http.post(f"{rig.url}{path}", json=body, headers=client.headers) as response:
            assert response.status == 422, (path, await response.text())
            refusal = (await response.json())["error"]
        assert refusal["code"] == "invalid_webhook_url" and refusal["field"] == "webhook_url", refusal
    await nothing_queued(client.tenant)


async def test_a_batch_over_the_daily_images_is_refused_whole(rig: Rig, http: aiohttp.ClientSession) -> None:
    client = new_client(rig)
    limited = run_atelier("admin", "quota", client.tenant, "--images-per-day", "3", cwd=rig.root, env=rig.env)
    assert limited.returncode == 0, limited.stderr
    body = {"prompts": [f"fox {i}" for i in range(4)], **OPTIONS}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 429
        refusal = (await response.json())["error"]
    assert refusal["code"] == "quota_exceeded" and "needs 4" in refusal["message"], refusal
    await nothing_queued(client.tenant)
    body["prompts"] = body["prompts"][:3]  # what fits is accepted
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 202, await response.text()


async def test_a_batch_over_the_unfinished_jobs_limit_is_refused_whole(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    client = new_client(rig, roomy=False)  # the free tier: 3 unfinished jobs per person (here: per key)
    body = {"prompts": [f"fox {i}" for i in range(10)], **OPTIONS}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 429, await response.text()
        refusal = (await response.json())["error"]
    assert refusal["code"] == "quota_exceeded", refusal
    assert "unfinished jobs per person" in refusal["message"] and "needs 10" in refusal["message"], refusal
    await nothing_queued(client.tenant)


async def test_another_tenants_batch_is_not_found(rig: Rig, http: aiohttp.ClientSession) -> None:
    owner, other = new_client(rig), new_client(rig)
    async with http.post(
        f"{rig.url}/v1/batches", json={"prompts": ["a fox"], **OPTIONS}, headers=owner.headers
    ) as response:
        batch = await response.json()
    async with http.get(f"{rig.url}/v1/batches/{batch['id']}", headers=other.headers) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "batch_not_found"
    async with http.get(f"{rig.url}/v1/batches/{batch['id']}", headers=owner.headers) as response:
        assert response.status == 200


async def test_a_job_cancelled_while_queued_gets_its_webhook_and_the_batch_completes(
    rig: Rig, http: aiohttp.ClientSession, hooks: Receiver
) -> None:
    client = new_client(rig)
    hooks.secret = client.secret
    # The worker takes one job at a time: while the slow first job runs, the second waits in the queue.
    body = {
        "prompts": ["a slow fox", "a quick fox"],
        **OPTIONS,
        "steps": 50,
        "count": 4,
        "webhook_url": hooks.url("/cancel"),
    }
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 202, await response.text()
        batch = await response.json()
    slow, quick = (job["id"] for job in batch["jobs"])
    async with http.delete(f"{rig.url}/v1/jobs/{quick}", headers=client.headers) as response:
        assert response.status == 200, await response.text()  # cancelled while queued
    got = await hooks.wait_for(
        lambda got: any(r.event == "batch.completed" and r.path == "/cancel" for r in got), within=240
    )
    mine = [r for r in got if r.path == "/cancel"]
    assert all(r.signed for r in mine)
    events = sorted((r.event, r.body["data"]["id"]) for r in mine)
    assert events == sorted(
        [("job.cancelled", quick), ("job.succeeded", slow), ("batch.completed", batch["id"])]
    )
    [completed] = [r.body["data"] for r in mine if r.event == "batch.completed"]
    assert completed["counts"]["cancelled"] == 1 and completed["counts"]["succeeded"] == 1
    # the worker that dropped the cancelled job from the queue recorded nothing new: one row per delivery
    assert await WebhookDelivery.filter(subject=quick).count() == 1


async def test_answers_from_the_result_cache_still_reach_their_webhook(
    rig: Rig, http: aiohttp.ClientSession, hooks: Receiver
) -> None:
    client = new_client(rig)
    hooks.secret = client.secret
    body = {"prompts": ["a fox", "a hen"], **OPTIONS, "seed": 11, "webhook_url": hooks.url("/first")}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        first = await response.json()
    await hooks.wait_for(
        lambda got: any(r.path == "/first" and r.event == "batch.completed" for r in got), 240
    )

    # The same batch again: every job is the earlier one (cache hits), so it is complete at once, and this
    # batch's webhook hears of each job and of itself.
    body["webhook_url"] = hooks.url("/again")
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 202, await response.text()
        again = await response.json()
    assert again["id"] != first["id"] and [j["id"] for j in again["jobs"]] == [j["id"] for j in first["jobs"]]
    assert again["status"] == "completed" and again["counts"]["succeeded"] == 2
    got = await hooks.wait_for(lambda got: len([r for r in got if r.path == "/again"]) == 3, 60)
    heard = sorted((r.event, r.body["data"]["id"]) for r in got if r.path == "/again")
    assert heard == sorted(
        [("batch.completed", again["id"])] + [("job.succeeded", j["id"]) for j in first["jobs"]]
    )

    # A single request answered from the cache: its webhook hears of the earlier job.
    single = {"prompt": "a fox", **OPTIONS, "seed": 11, "webhook_url": hooks.url("/single")}
    async with http.post(f"{rig.url}/v1/images", json=single, headers=client.headers) as response:
        assert response.status == 200 and response.headers["X-Atelier-Cache"] == "hit"
        job = await response.json()
    got = await hooks.wait_for(lambda got: any(r.path == "/single" for r in got), 60)
    [heard_single] = [r for r in got if r.path == "/single"]
    assert heard_single.signed and heard_single.event == "job.succeeded"
    assert heard_single.body["data"]["id"] == job["id"] == first["jobs"][0]["id"]
    assert all(r.signed for r in got)


async def test_a_job_refused_after_the_batch_check_cuts_the_batch_short_and_says_which(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """The whole-batch check does not reserve GPU time (it is estimated per job at admission), so a tenant with
    1 GPU second a month left passes it with 50 prompts (each estimated at 0.05 s at least) and is refused part way through: the jobs queued until
    then are the batch, every later prompt is listed in `refused`, and nothing else was queued."""
    client = new_client(rig)
    limited = run_atelier(
        "admin", "quota", client.tenant, "--gpu-seconds-per-month", "1", cwd=rig.root, env=rig.env
    )
    assert limited.returncode == 0, limited.stderr
    prompts = [f"a fox, take {i}" for i in range(50)]
    # The fast lane: on a tier with relax (free), "auto" would go on in the relax lane instead of refusing.
    body = {"prompts": prompts, **OPTIONS, "steps": 1, "lane": "fast"}
    async with http.post(f"{rig.url}/v1/batches", json=body, headers=client.headers) as response:
        assert response.status == 202, await response.text()
        batch = await response.json()
    queued, refused = batch["jobs"], batch["refused"]
    assert queued and refused and len(queued) + len(refused) == 50
    assert [r["index"] for r in refused] == list(range(len(queued), 50))
    assert all(r["prompt"] == prompts[r["index"]] for r in refused)
    assert {(r["error"]["code"], r["error"]["field"]) for r in refused[:1]} == {
        ("quota_exceeded", f"prompts.{len(queued)}")
    }
    assert "GPU seconds per month" in refused[0]["error"]["message"]
    tenant = await tenant_for(client.tenant)
    assert await Job.filter(tenant_id=tenant.id).count() == len(queued)
    stored = await Batch.get(id=batch["id"])
    assert stored.job_ids == [job["id"] for job in queued]
