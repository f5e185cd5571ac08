"""The gallery once retention deleted an image: its job's page says it expired, in words, and the image's own
pages answer 404 like any image that is not there (the real `atelier api`, PostgreSQL, the rig's blob store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from jobs.queue import enqueue
from jobs.retention import RetentionDays, apply_retention, set_retention
from jobs.specs import ReplyTarget, imagine_spec
from storage.models import Image, Job, get_or_create_user
from tests.gallery.conftest import ACCOUNT_IDS, QUEUE, Rig

pytestmark = pytest.mark.timeout(120)


async def test_an_expired_image_is_gone_from_the_gallery_and_its_job_page_says_so(rig: Rig) -> None:
    tenant = await rig.tenant("1002")
    spec = imagine_spec(rig.runtime.registry, prompt="a paper boat", model="tiny", seed=7, tiny=True)
    queued = await enqueue(
        rig.runtime.redis,
        spec,
        request_id="gallery-test:retention",
        reply_target=ReplyTarget(platform="discord"),
        queue_name=QUEUE,
        tenant=tenant,
        user=await get_or_create_user(tenant, ACCOUNT_IDS["alice"], "alice"),
        tiers=rig.runtime.settings.load_tiers(),
    )
    await rig.run_jobs()
    image = await Image.get(job_id=queued.job_id)
    page = f"{rig.base}/gallery/discord/1002"
    defaults = RetentionDays()
    await set_retention(tenant, defaults, {"images": 3}, [])  # only this job is older than 3 days
    try:
        await Job.filter(id=queued.job_id).update(created_at=datetime.now(UTC) - timedelta(days=3, hours=2))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await rig.sign_in(http, "discord", "alice")
            assert (await http.get(f"{page}/images/{image.id}/file")).status == 200
            await apply_retention(rig.runtime.blobs, defaults)

            assert not await rig.runtime.blobs.exists(image.blob_key)
            assert not await Image.filter(id=image.id).exists()
            job_page = await http.get(f"{page}/jobs/{queued.job_id}")
            assert job_page.status == 200
            assert "This image has expired (kept 3 days on this server)." in await job_page.text()
            for path in (f"/images/{image.id}", f"/images/{image.id}/file", f"/images/{image.id}/thumb"):
                assert (await http.get(f"{page}{path}", allow_redirects=False)).status == 404, path
            assert f"/images/{image.id}" not in await (await http.get(page)).text()
    finally:
        await set_retention(tenant, defaults, {}, ["images"])
