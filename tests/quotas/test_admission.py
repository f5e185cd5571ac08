"""Admission: the conditional UPDATE never over-admits, the ledger balances, and a job settles exactly once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quotas.admin import Admin
from quotas.errors import QuotaExceeded, TenantPaused, UserBanned
from quotas.ledger import audit, refund, reserve, settle
from quotas.tiers import Tiers
from storage.db import close_db, init_db
from storage.models import Tenant, get_or_create_tenant, get_or_create_user
from storage.quota_models import LedgerKind, QuotaCounter, QuotaLedger, QuotaReservation

TIERS = Tiers()


async def _admit_concurrently(tenant: Tenant, attempts: int) -> tuple[int, list[Exception]]:
    users = [await get_or_create_user(tenant, f"u{i % 7}") for i in range(attempts)]

    async def one(i: int) -> object:
        return await reserve(
            f"job-{i}", tenant=tenant, user=users[i], model="tiny", images=1, gpu_ms=100, tiers=TIERS
        )

    results = await asyncio.gather(*(one(i) for i in range(attempts)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    return attempts - len(refused), refused


async def test_200_concurrent_admissions_against_a_limit_of_50_admit_exactly_50_on_postgres(
    runtime, admin: Admin
) -> None:
    await admin.set_limits(
        "discord:race",
        images_per_day=50,
        images_per_user_per_day=1000,
        queued_jobs_per_user=1000,
        concurrent_jobs=1000,
    )
    tenant = await get_or_create_tenant("discord", "race")
    admitted, refused = await _admit_concurrently(tenant, 200)

    assert admitted == 50
    assert len(refused) == 150 and all(isinstance(r, QuotaExceeded) for r in refused), refused[:3]
    assert {r.limit_name for r in refused} == {"images_per_day"}
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    counter = await QuotaCounter.get(tenant=tenant, scope="tenant", metric="images", period=day)
    assert counter.used == 50
    assert await QuotaReservation.filter(tenant=tenant).count() == 50
    assert await QuotaLedger.filter(tenant=tenant, kind=LedgerKind.RESERVE).count() == 50
    assert sum(await QuotaLedger.filter(tenant=tenant).values_list("images", flat=True)) == 50
    assert await audit(tenant) == []


async def test_concurrent_admissions_never_over_admit_on_sqlite(tmp_path: Path) -> None:
    await init_db(f"sqlite://{tmp_path}/quotas.db")
    try:
        tenant = await get_or_create_tenant("slack", "T1")
        from storage.quota_models import TenantQuota

        await TenantQuota.create(
            tenant=tenant, tier="free", images_per_day=10, queued_jobs_per_user=100, concurrent_jobs=100
        )
        admitted, refused = await _admit_concurrently(tenant, 40)
        assert admitted == 10 and len(refused) == 30
        assert await audit(tenant) == []
    finally:
        await close_db()


async def test_a_job_settles_once_and_a_settled_job_is_not_refunded(runtime) -> None:
    tenant = await get_or_create_tenant("discord", "once")
    user = await get_or_create_user(tenant, "7")
    first = await reserve("j1", tenant=tenant, user=user, model="tiny", images=2, gpu_ms=5000, tiers=TIERS)
    again = await reserve("j1", tenant=tenant, user=user, model="tiny", images=2, gpu_ms=5000, tiers=TIERS)
    assert first.created and not again.created  # a redelivered request reserves nothing more

    assert await settle("j1", gpu_seconds=1.25, images=2) is True
    assert await settle("j1", gpu_seconds=9.0, images=2) is False  # the job ran twice: charged once
    assert await refund("j1") is False
    kinds = await QuotaLedger.filter(job_id="j1").order_by("id").values_list("kind", "images", "gpu_ms")
    assert kinds == [(LedgerKind.RESERVE, 2, 5000), (LedgerKind.SETTLE, 0, 1250 - 5000)]
    month = datetime.now(UTC).strftime("%Y-%m")
    assert (await QuotaCounter.get(tenant=tenant, scope="tenant", metric="gpu_ms", period=month)).used == 1250
    assert (await QuotaCounter.get(tenant=tenant, scope="tenant", metric="in_flight", period="")).used == 0
    assert await audit(tenant) == []


async def test_a_refusal_names_the_limit_the_usage_and_the_reset_in_the_tenants_timezone(
    runtime, admin
) -> None:
    await admin.set_limits("discord:tz", images_per_day=3)
    await admin.set_timezone("discord:tz", "Asia/Tokyo")
    tenant = await get_or_create_tenant("discord", "tz")
    user = await get_or_create_user(tenant, "1")
    for i in range(3):
        await reserve(f"tz{i}", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
        await settle(f"tz{i}", gpu_seconds=0.01, images=1)
    with pytest.raises(QuotaExceeded) as refused:
        await reserve("tz3", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    message = str(refused.value)
    assert "images per day" in message and "3 of 3 used" in message
    assert re.search(r"resets at \d{4}-\d\d-\d\d 00:00 Asia/Tokyo", message), message
    assert not await QuotaReservation.exists(job_id="tz3")


async def test_unfinished_job_limits_free_up_when_jobs_finish(runtime, admin) -> None:
    await admin.set_limits("discord:busy", queued_jobs_per_user=2)
    tenant = await get_or_create_tenant("discord", "busy")
    user = await get_or_create_user(tenant, "1")
    other = await get_or_create_user(tenant, "2")
    for job in ("b1", "b2"):
        await reserve(job, tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    with pytest.raises(QuotaExceeded, match=r"unfinished jobs per person \(2 of 2 used\); it frees up"):
        await reserve("b3", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    await reserve(
        "c1", tenant=tenant, user=other, model="tiny", images=1, gpu_ms=10, tiers=TIERS
    )  # per person
    await refund("b1")
    await reserve("b3", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    assert await audit(tenant) == []


async def test_a_paused_tenant_and_a_banned_user_are_refused_with_a_reason(runtime, admin) -> None:
    tenant = await get_or_create_tenant("slack", "T9")
    user = await get_or_create_user(tenant, "U1")
    await admin.ban(tenant, "U1", reason="spam")
    with pytest.raises(UserBanned, match="blocked"):
        await reserve("x1", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    assert await admin.unban(tenant, "U1") is True
    await admin.pause(tenant)
    with pytest.raises(TenantPaused, match="paused"):
        await reserve("x2", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    await admin.resume(tenant)
    await reserve("x3", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=TIERS)
    assert await QuotaReservation.filter(tenant=tenant).values_list("job_id", flat=True) == ["x3"]
