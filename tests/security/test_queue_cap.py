"""The queue cap (issue 11, item 5): many servers on the free tier cannot fill the queue. Past
ATELIER_MAX_QUEUED_JOBS unfinished jobs in all, or past a tenant's ATELIER_MAX_QUEUED_SHARE of it, a request is
told "Atelier is busy right now (N jobs waiting)" and nothing is charged, recorded or queued; under concurrency
exactly the cap is admitted. Through `jobs.queue.enqueue` on the real PostgreSQL and Redis (the quotas rig)."""

from __future__ import annotations

import asyncio

import pytest

from atelier.runtime import Runtime
from jobs.queue import Enqueued, enqueue, job_id_for
from jobs.specs import ReplyTarget, imagine_spec
from quotas.errors import QueueBusy
from quotas.ledger import audit
from quotas.tiers import QueueCap, Tiers
from storage.models import Job, get_or_create_tenant, get_or_create_user
from storage.quota_models import QuotaCounter, QuotaLedger, QuotaReservation
from tests.quotas.conftest import env, postgres_url, quotas_postgres_url, redis_url, runtime

__all__ = ["env", "postgres_url", "quotas_postgres_url", "redis_url", "runtime"]

CAP = Tiers(queue_cap=QueueCap(max_jobs=8, max_share=0.25))  # 2 unfinished jobs per tenant at most


async def _imagine(runtime: Runtime, guild: str, member: str, request_id: str) -> Enqueued:
    """A free-tier Discord server's member asks for one image, as the bot would."""
    tenant = await get_or_create_tenant("discord", guild)
    spec = imagine_spec(runtime.registry, tiny=True, prompt="a fox", seed=1, size="64x64", steps=1)
    return await enqueue(
        runtime.redis,
        spec,
        request_id=request_id,
        reply_target=ReplyTarget(platform="cli"),
        queue_name=runtime.settings.queue_name,
        tenant=tenant,
        user=await get_or_create_user(tenant, member),
        tiers=CAP,
    )


async def _nothing_charged(runtime: Runtime, guild: str, request_id: str) -> None:
    job_id = job_id_for(request_id)
    assert not await Job.exists(id=job_id)
    assert not await QuotaReservation.exists(job_id=job_id)
    assert not await QuotaLedger.exists(job_id=job_id)
    assert await runtime.redis.zscore(runtime.settings.queue_name, job_id) is None
    tenant = await get_or_create_tenant("discord", guild)
    assert await audit(tenant) == []


async def test_a_tenant_past_its_share_is_told_atelier_is_busy_and_charged_nothing(runtime: Runtime) -> None:
    for i in range(2):
        await _imagine(runtime, "g-share", f"m{i}", f"share:{i}")
    with pytest.raises(QueueBusy) as refused:
        await _imagine(runtime, "g-share", "m9", "share:over")
    assert str(refused.value) == "Atelier is busy right now (2 jobs waiting); try again in a few minutes."
    await _nothing_charged(runtime, "g-share", "share:over")
    tenant = await get_or_create_tenant("discord", "g-share")
    in_flight = await QuotaCounter.get(tenant=tenant, scope="tenant", metric="in_flight", period="")
    assert in_flight.used == 2
    # Another server still gets in: the share limits the one tenant, not the queue.
    await _imagine(runtime, "g-other", "m0", "other:0")


async def test_past_the_global_cap_every_server_is_told_atelier_is_busy_and_charged_nothing(
    runtime: Runtime,
) -> None:
    for g in range(4):
        for i in range(2):
            await _imagine(runtime, f"g{g}", f"m{i}", f"full:{g}:{i}")
    with pytest.raises(QueueBusy) as refused:
        await _imagine(runtime, "g-new", "m0", "full:new")
    assert str(refused.value) == "Atelier is busy right now (8 jobs waiting); try again in a few minutes."
    await _nothing_charged(runtime, "g-new", "full:new")
    # The same request again once admitted is never busy: a repeat of an admitted job returns it.
    again = await _imagine(runtime, "g0", "m0", "full:0:0")
    assert again.job_id == job_id_for("full:0:0") and not again.created


async def test_concurrent_requests_from_many_servers_admit_exactly_the_cap(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(_imagine(runtime, f"race{g}", "m0", f"race:{g}") for g in range(30)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, Enqueued)]
    refused = [r for r in results if not isinstance(r, Enqueued)]
    assert len(admitted) == 8, refused[:3]
    assert len(refused) == 22 and all(isinstance(r, QueueBusy) for r in refused), refused[:3]
    assert await QuotaReservation.all().count() == 8
    assert await Job.all().count() == 8
