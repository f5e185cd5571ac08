"""The retention job on PostgreSQL and the loopback S3 server, with `now` given instead of waited for: inputs
shared between tenants, training data (a dataset and the checkpoint an abandoned run left), thumbnails shared by
identical images, two runs at once, and the admin CLI's checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from atelier.runtime import blob_store_for
from atelier.settings import Settings
from jobs.retention import RetentionDays, apply_retention, retention_of, set_retention, thumb_key
from jobs.training import checkpoint_key
from storage.blobs import BlobStore
from storage.db import close_db, init_db
from storage.models import Image, Job, JobStatus, Tenant, get_or_create_tenant
from storage.retention import JobInput, record_job_inputs
from tests.support import create_bucket, run_atelier, s3_settings

DEFAULTS = RetentionDays()  # 90, 7, 30
NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(postgres_databases) -> AsyncIterator[str]:
    url = await postgres_databases("atelier_test_retention_job")
    await init_db(url)
    yield url
    await close_db()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def blobs(moto_s3_endpoint: str) -> AsyncIterator[BlobStore]:
    settings = Settings(blob_url="s3://atelier-retention-job/b", **s3_settings(moto_s3_endpoint))
    await create_bucket(settings)
    store = blob_store_for(settings)
    yield store
    await store.close()


async def tenant() -> Tenant:
    return await get_or_create_tenant("discord", uuid.uuid4().hex[:12])


async def job(
    owner: Tenant, age: timedelta, *, kind: str = "imagine", spec: dict | None = None, **fields
) -> Job:
    """A finished job of `owner`, created `age` before NOW, its inputs recorded as enqueue records them."""
    spec = spec or {"prompt": "a quiet harbour"}
    row = await Job.create(
        id=f"j{uuid.uuid4().hex[:20]}",
        kind=kind,
        spec=spec,
        status=JobStatus.SUCCEEDED,
        tenant=owner,
        **fields,
    )
    await Job.filter(id=row.id).update(created_at=NOW - age)
    await record_job_inputs(row.id, spec)
    return await Job.get(id=row.id)


async def image(blobs: BlobStore, source: Job, index: int = 0, sha256: str | None = None) -> Image:
    key = f"images/{source.id}/{index}.png"
    await blobs.put(key, b"png bytes", "image/png")
    digest = sha256 or uuid.uuid4().hex
    await blobs.put(thumb_key(digest), b"jpeg bytes", "image/jpeg")
    return await Image.create(
        job=source, index=index, blob_key=key, width=64, height=64, size_bytes=9, seed=1, sha256=digest
    )


async def test_an_input_two_tenants_used_goes_when_both_are_past_their_input_retention(
    database: str, blobs: BlobStore
) -> None:
    shorter, longer = await tenant(), await tenant()
    await set_retention(longer, DEFAULTS, {"inputs": 30}, [])
    shared, own = (f"inputs/{hashlib.sha256(uuid.uuid4().bytes).hexdigest()}.png" for _ in range(2))
    for key in (shared, own):
        await blobs.put(key, b"an upload", "image/png")
    first = await job(shorter, timedelta(days=8), kind="inpaint", spec={"image": shared, "mask": own})
    await job(longer, timedelta(days=8), kind="vary", spec={"image": shared})

    await apply_retention(blobs, DEFAULTS, now=NOW)
    assert not await blobs.exists(own)  # only the first tenant's job named it, and that is 8 days > 7 old
    assert await blobs.exists(shared)  # the other tenant keeps inputs 30 days
    assert not await JobInput.filter(job_id=first.id).exists()
    assert (await Job.get(id=first.id)).inputs_expired_at == NOW

    await apply_retention(blobs, DEFAULTS, now=NOW + timedelta(days=23))
    assert not await blobs.exists(shared)
    assert not await JobInput.filter(blob_key=shared).exists()


async def test_training_data_goes_after_its_period_and_the_lora_stays(
    database: str, blobs: BlobStore
) -> None:
    owner = await tenant()
    old = await job(owner, timedelta(days=31), kind="train_lora", spec={"dataset": "datasets/old.zip"})
    await Job.filter(id=old.id).update(status=JobStatus.FAILED)  # given up by arq: its checkpoint was left
    recent = await job(owner, timedelta(days=10), kind="train_lora", spec={"dataset": "datasets/recent.zip"})
    lora = f"loras/{owner.id}/1.safetensors"
    for key in (
        "datasets/old.zip",
        checkpoint_key(old.id),
        "datasets/recent.zip",
        checkpoint_key(recent.id),
        lora,
    ):
        await blobs.put(key, b"bytes")

    swept = await apply_retention(blobs, DEFAULTS, now=NOW)
    assert swept.training == 1
    assert not await blobs.exists("datasets/old.zip") and not await blobs.exists(checkpoint_key(old.id))
    assert await blobs.exists("datasets/recent.zip") and await blobs.exists(checkpoint_key(recent.id))
    assert await blobs.exists(lora)
    assert (await Job.get(id=old.id)).training_expired_at == NOW
    assert (await apply_retention(blobs, DEFAULTS, now=NOW)).training == 0  # done once


async def test_two_runs_at_once_delete_every_old_image_once_and_keep_a_thumbnail_still_shown(
    database: str, blobs: BlobStore
) -> None:
    owner, other = await tenant(), await tenant()
    await set_retention(other, DEFAULTS, {"images": 0}, [])  # forever
    old_jobs = [await job(owner, timedelta(days=91)) for _ in range(6)]
    images = [await image(blobs, j, i) for j in old_jobs for i in range(2)]
    twin_sha = images[0].sha256
    kept = await image(blobs, await job(other, timedelta(days=400)), sha256=twin_sha)  # identical pixels
    young = await image(blobs, await job(owner, timedelta(days=89)))

    first, second = await asyncio.gather(
        apply_retention(blobs, DEFAULTS, now=NOW), apply_retention(blobs, DEFAULTS, now=NOW)
    )
    assert first.images + second.images >= len(images)
    for gone in images:
        assert not await blobs.exists(gone.blob_key)
        assert not await Image.filter(id=gone.id).exists()
    assert not await blobs.exists(thumb_key(images[1].sha256))
    assert await blobs.exists(thumb_key(twin_sha))  # the other tenant's identical image still shows it
    for alive in (kept, young):
        assert await blobs.exists(alive.blob_key) and await Image.filter(id=alive.id).exists()
    assert (await Job.get(id=old_jobs[0].id)).images_expired_at is not None


async def test_a_tenants_own_periods_and_defaults(database: str) -> None:
    owner = await tenant()
    assert await retention_of(owner.id, DEFAULTS) == DEFAULTS
    assert await set_retention(owner, DEFAULTS, {"images": 30, "training": 0}, []) == RetentionDays(30, 7, 0)
    assert await set_retention(owner, DEFAULTS, {}, ["images"]) == RetentionDays(90, 7, 0)
    with pytest.raises(ValueError, match="images retention must be"):
        await set_retention(owner, DEFAULTS, {"images": -1}, [])
    assert await retention_of(owner.id, DEFAULTS) == RetentionDays(90, 7, 0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--images", "soon"], "--images takes a number of days or 'forever'"),
        (["--inputs", "0"], "--inputs 0 would keep nothing"),
        (["--images", "5", "--clear", "images"], "contradict each other"),
        (["--clear", "thumbnails"], "unknown kind of data 'thumbnails'"),
    ],
)
def test_the_admin_cli_refuses_bad_periods_in_one_line(args: list[str], words: str, tmp_path) -> None:
    result = run_atelier(
        "admin", "retention", "discord:1234", *args, cwd=tmp_path, env={"ATELIER_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert words in result.stderr
    assert not (tmp_path / "atelier.db").exists()  # refused before any service opened


async def test_migration_0008_records_the_inputs_of_jobs_enqueued_before_it(postgres_databases) -> None:
    from tortoise.context import TortoiseContext
    from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

    from storage.db import _apps_config, migrate, tortoise_config

    url = await postgres_databases("atelier_test_retention_migration")
    first, second = f"inputs/{'a' * 64}.png", f"inputs/{'b' * 64}.png"
    async with TortoiseContext() as context:
        await context.init(config=tortoise_config(url))
        connection = context.db("default")
        executor = MigrationExecutor(connection, _apps_config())
        await executor.migrate(
            [MigrationTarget("models", "0007_styles_and_member_settings")], direction="forward"
        )
        spec = json.dumps(
            {"image": first, "references": [{"image": second, "weight": 0.5}], "prompt": "inputs/no.png"}
        )
        await connection.execute_query(
            "INSERT INTO jobs (id, kind, model, spec, status, created_at, attempts, gpu_seconds) "
            "VALUES ('jold', 'guided', '', $1, 'succeeded', now(), 0, 0)",
            [spec],
        )
    applied = await migrate(url)
    assert applied[0] == "0008_retention", applied  # then whatever came after it
    async with TortoiseContext() as context:
        await context.init(config=tortoise_config(url))
        _, rows = await context.db("default").execute_query(
            "SELECT job_id, blob_key FROM job_inputs ORDER BY blob_key"
        )
    assert [(r["job_id"], r["blob_key"]) for r in rows] == [("jold", first), ("jold", second)]
