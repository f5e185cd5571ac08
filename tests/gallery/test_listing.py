"""The gallery's search and filters on both databases Atelier runs on: PostgreSQL (`spec->>'prompt'`) and the
embedded SQLite (`json_extract`), on records written as the worker writes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from bots.api.gallery.listing import PAGE_SIZE, Filters, gallery_page
from storage.db import close_db, init_db
from storage.models import Image, Job, Tenant, get_or_create_tenant, get_or_create_user
from storage.preferences import update_preferences

PROMPTS = ["A Red Fox", "blue 50% off_sale", "a fox, quietly", "Ünïcode FOX", "lighthouse"]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def tenant(request, tmp_path: Path, postgres_databases) -> AsyncIterator[Tenant]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path}/atelier.db"
    else:
        url = await postgres_databases("atelier_test_gallery_listing")
    await init_db(url)
    try:
        tenant = await get_or_create_tenant("discord", "77", "Listing")
        other = await get_or_create_tenant("discord", "78", "Elsewhere")
        ann = await get_or_create_user(tenant, "1", "ann")
        ben = await get_or_create_user(tenant, "2", "ben")
        for n, prompt in enumerate(PROMPTS):
            job = await Job.create(
                id=f"j{n}",
                kind="imagine",
                model="tiny-strict" if n == 4 else "tiny",
                spec={"prompt": prompt, "seed": n},
                tenant=tenant,
                user=ann if n % 2 == 0 else ben,
            )
            await Image.create(
                job=job,
                index=0,
                blob_key=f"images/j{n}/0.png",
                width=64,
                height=64,
                size_bytes=1,
                seed=n,
                sha256=f"{n:064d}",
                flagged=n == 4,
            )
        await Image.filter(job_id="j0").update(created_at=datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
        foreign = await Job.create(
            id="x", kind="imagine", model="tiny", spec={"prompt": "a fox elsewhere"}, tenant=other
        )
        await Image.create(
            job=foreign,
            index=0,
            blob_key="images/x/0.png",
            width=64,
            height=64,
            size_bytes=1,
            seed=0,
            sha256="f" * 64,
        )
        yield tenant
    finally:
        await close_db()


async def _prompts(tenant: Tenant, **filters) -> list[str]:
    page = await gallery_page(tenant, Filters(**filters))
    return [image.job.spec["prompt"] for image in page.images]


async def test_search_is_a_case_insensitive_substring_of_this_tenants_prompts(tenant: Tenant) -> None:
    assert sorted(await _prompts(tenant, q="fox")) == sorted(["A Red Fox", "a fox, quietly", "Ünïcode FOX"])
    assert await _prompts(tenant, q="RED") == ["A Red Fox"]
    assert await _prompts(tenant, q="50%") == ["blue 50% off_sale"]
    assert await _prompts(tenant, q="%") == ["blue 50% off_sale"]  # literal
    assert await _prompts(tenant, q="50__") == []  # `_` is literal too (as a wildcard it matches "50% ")
    assert await _prompts(tenant, q="elsewhere") == []


async def test_filters_combine_and_newest_comes_first(tenant: Tenant) -> None:
    assert await _prompts(tenant) == [*reversed(PROMPTS[1:]), "A Red Fox"]  # j0 is dated March
    assert await _prompts(tenant, model="tiny-strict") == ["lighthouse"]
    ben = (await Job.get(id="j1")).user_id  # type: ignore[attr-defined]
    assert await _prompts(tenant, user=ben) == ["Ünïcode FOX", "blue 50% off_sale"]
    assert await _prompts(tenant, since=date(2026, 3, 1), until=date(2026, 3, 1)) == ["A Red Fox"]
    assert await _prompts(tenant, until=date(2026, 2, 28)) == []
    assert await _prompts(tenant, q="fox", user=ben) == ["Ünïcode FOX"]
    page = await gallery_page(tenant, Filters(page=2))
    assert page.images == [] and page.total == 5 and page.pages == 1 and PAGE_SIZE > 5


async def test_the_safety_filter_decides_which_are_withheld(tenant: Tenant) -> None:
    flagged = await Image.get(job_id="j4")
    assert (await gallery_page(tenant, Filters())).hidden == {flagged.id}
    await update_preferences(tenant, safety=False)
    assert (await gallery_page(tenant, Filters())).hidden == set()


@pytest.mark.parametrize("query", [{"q": "x" * 300}, {"page": "0"}, {"from": "2026-13-01"}])
def test_query_strings_become_bounded_filters(query: dict) -> None:
    filters, problems = Filters.from_query(query)
    assert len(filters.q) <= 200 and filters.page >= 1
    assert bool(problems) == ("from" in query)
