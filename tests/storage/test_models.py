"""Records round-trip, constraints hold, and get-or-create is safe under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.db import close_db, init_db
from storage.models import (
    Image,
    Job,
    JobStatus,
    Tenant,
    User,
    get_or_create_tenant,
    get_or_create_user,
)


@pytest_asyncio.fixture
async def db(empty_db_url: str) -> AsyncIterator[str]:
    await init_db(empty_db_url)
    yield empty_db_url
    await close_db()


def _image(job: Job, index: int, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "job": job,
        "index": index,
        "blob_key": f"images/{job.id}/{index}.png",
        "width": 64,
        "height": 64,
        "size_bytes": 1234,
        "seed": 7,
        "sha256": "ab" * 32,
    }
    return values | overrides


async def test_records_round_trip(db: str) -> None:
    tenant = await get_or_create_tenant("discord", "123456789012345678", "Pixel Club")
    user = await get_or_create_user(tenant, "987654321", "ada")
    spec = {"prompt": "a lighthouse at dusk", "negative": "text", "size": [64, 64], "lora": [["ink", 0.8]]}
    reply_target = {"platform": "discord", "channel_id": "42", "thread_id": None}
    started = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    await Job.create(
        id="imagine-0f3a",
        kind="imagine",
        model="tiny",
        spec=spec,
        tenant=tenant,
        user=user,
        reply_target=reply_target,
        started_at=started,
        attempts=2,
        error="CUDA out of memory",
        gpu_seconds=1.25,
    )
    job = await Job.get(id="imagine-0f3a")
    await Image.create(**_image(job, 0, seed=2**63 - 1, size_bytes=2**31 - 1))

    job = await Job.get(id="imagine-0f3a").prefetch_related("images", "tenant", "user")
    assert job.status is JobStatus.QUEUED
    assert (job.spec, job.reply_target) == (spec, reply_target)
    assert job.started_at == started
    assert job.finished_at is None and job.delivered_at is None
    assert job.created_at.tzinfo is not None
    assert abs(job.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert (job.attempts, job.error, job.gpu_seconds) == (2, "CUDA out of memory", 1.25)
    assert (job.tenant.external_id, job.tenant.name, job.user.name) == (
        "123456789012345678",
        "Pixel Club",
        "ada",
    )
    [image] = job.images
    assert (image.seed, image.size_bytes, image.blob_key) == (
        2**63 - 1,
        2**31 - 1,
        "images/imagine-0f3a/0.png",
    )

    await Job.filter(id="imagine-0f3a").update(status=JobStatus.SUCCEEDED)
    assert (await Job.get(id="imagine-0f3a")).status is JobStatus.SUCCEEDED
    assert await Job.filter(status="succeeded").count() == 1


async def test_a_job_needs_no_tenant_or_user(db: str) -> None:
    await Job.create(id="cli-1", kind="imagine", spec={})
    job = await Job.get(id="cli-1")
    assert (job.tenant_id, job.user_id, job.reply_target, job.model) == (None, None, None, "")  # type: ignore[attr-defined]


async def test_unique_constraints_hold(db: str) -> None:
    discord = await Tenant.create(platform="discord", external_id="1")
    await Tenant.create(platform="slack", external_id="1")  # same id on another platform is another tenant
    with pytest.raises(IntegrityError):
        await Tenant.create(platform="discord", external_id="1")

    other = await Tenant.create(platform="discord", external_id="2")
    await User.create(tenant=discord, external_id="u")
    await User.create(tenant=other, external_id="u")  # the same person id in another guild is another user
    with pytest.raises(IntegrityError):
        await User.create(tenant=discord, external_id="u")

    job = await Job.create(id="j", kind="imagine", spec={})
    with pytest.raises(IntegrityError):
        await Job.create(id="j", kind="upscale", spec={})
    await Image.create(**_image(job, 0))
    await Image.create(**_image(job, 1))
    with pytest.raises(IntegrityError):
        await Image.create(**_image(job, 1))


async def test_foreign_keys_cascade_and_nullify(db: str) -> None:
    tenant = await get_or_create_tenant("slack", "T01")
    user = await get_or_create_user(tenant, "U01")
    job = await Job.create(id="j", kind="imagine", spec={}, tenant=tenant, user=user)
    await Image.create(**_image(job, 0))

    await tenant.delete()  # its users go with it; the job history stays, detached
    job = await Job.get(id="j")
    assert (job.tenant_id, job.user_id) == (None, None)  # type: ignore[attr-defined]
    assert await User.all().count() == 0

    await job.delete()
    assert await Image.all().count() == 0


async def test_get_or_create_tenant_makes_one_row_for_concurrent_callers(db: str) -> None:
    tenants = await asyncio.gather(*(get_or_create_tenant("discord", "777", "Guild") for _ in range(20)))

    assert len({tenant.id for tenant in tenants}) == 1
    assert await Tenant.filter(platform="discord", external_id="777").count() == 1


async def test_get_or_create_tenant_works_inside_callers_transactions(db: str) -> None:
    async def enqueue() -> int:
        async with in_transaction():  # the loser's IntegrityError must not abort its caller's transaction
            tenant = await get_or_create_tenant("discord", "888")
            job = await Job.create(id=f"j-{uuid.uuid4().hex}", kind="imagine", spec={}, tenant=tenant)
            return job.tenant_id  # type: ignore[attr-defined]

    tenant_ids = await asyncio.gather(*(enqueue() for _ in range(10)))

    assert len(set(tenant_ids)) == 1
    assert await Tenant.all().count() == 1
    assert await Job.filter(tenant_id=tenant_ids[0]).count() == 10


async def test_get_or_create_user_makes_one_row_for_concurrent_callers(db: str) -> None:
    tenant = await get_or_create_tenant("slack", "T02")

    users = await asyncio.gather(*(get_or_create_user(tenant, "U9", "bo") for _ in range(20)))

    assert len({user.id for user in users}) == 1
    assert await User.filter(tenant=tenant).count() == 1


async def test_get_or_create_returns_the_existing_row_and_follows_renames(db: str) -> None:
    first = await get_or_create_tenant("discord", "1", "Old name")
    again = await get_or_create_tenant("discord", "1")
    renamed = await get_or_create_tenant("discord", "1", "New name")
    assert first.id == again.id == renamed.id
    assert again.name == "Old name"  # no name given: the stored one is kept
    assert (await Tenant.get(id=first.id)).name == "New name"

    user = await get_or_create_user(first, "u", "ada")
    assert (await get_or_create_user(first, "u", "ada lovelace")).id == user.id
    assert (await User.get(id=user.id)).name == "ada lovelace"


async def test_get_or_create_refuses_unknown_platforms_and_empty_ids(db: str) -> None:
    with pytest.raises(ValueError, match="unknown platform 'teams'"):
        await get_or_create_tenant("teams", "1")
    with pytest.raises(ValueError, match="external_id"):
        await get_or_create_tenant("discord", "")
    tenant = await get_or_create_tenant("cli", "local")
    with pytest.raises(ValueError, match="external_id"):
        await get_or_create_user(tenant, "")
    assert await Tenant.all().count() == 1
