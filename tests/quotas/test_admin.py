"""The admin API every front-end uses: tiers, limits, usage, pause and resume, bans, job lists, reconciliation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jobs import events
from jobs.queue import reconcile
from jobs.queue_status import queue_position
from quotas.admin import Admin
from quotas.ledger import audit, reserve
from quotas.tiers import Tiers
from storage.models import Job, JobStatus, Tenant, get_or_create_tenant, get_or_create_user
from storage.preferences import Preferences
from storage.quota_models import QuotaReservation, ReservationState, TenantQuota


async def test_a_tenant_set_up_before_its_first_command_keeps_its_settings(admin: Admin, imagine) -> None:
    policy = await admin.set_tier("slack:T42", "standard")
    assert policy.tier.name == "standard" and policy.limits.images_per_day == 500
    policy = await admin.set_limits("slack:T42", images_per_day="7", concurrent_jobs=2)
    assert (policy.limits.images_per_day, policy.limits.concurrent_jobs) == (7, 2)
    assert policy.limits.images_per_user_per_day == 100  # still the tier's default
    assert "images-per-day: 7 (override)" in policy.describe()

    await imagine("slack:T42", "U1", "first-command")
    assert await Tenant.filter(platform="slack", external_id="T42").count() == 1
    assert (await admin.policy("slack:T42")).limits.images_per_day == 7

    policy = await admin.clear_limits("slack:T42", "images_per_day")
    assert policy.limits.images_per_day == 500 and policy.limits.concurrent_jobs == 2
    assert (await admin.clear_limits("slack:T42")).overrides == {}


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"images_per_day": -1}, "images-per-day must be 0 or more"),
        ({"images_per_day": 2.5}, "images-per-day must be a whole number"),
        ({"images_per_day": True}, "images-per-day must be a whole number"),
        ({"images_per_day": "ten"}, "images-per-day must be a whole number"),
        ({"images": 3}, "unknown limit 'images'"),
        ({}, "name at least one limit"),
    ],
)
async def test_bad_limits_are_refused_and_nothing_is_saved(admin: Admin, limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await admin.set_limits("discord:5", **limits)
    assert not await TenantQuota.exists()


async def test_unknown_tiers_and_timezones_are_refused(admin: Admin) -> None:
    with pytest.raises(ValueError, match="unknown tier 'gold': choose one of free, standard, priority"):
        await admin.set_tier("discord:5", "gold")
    with pytest.raises(ValueError, match="unknown timezone 'Nowhere/Land'"):
        await admin.set_timezone("discord:5", "Nowhere/Land")
    with pytest.raises(ValueError, match="PLATFORM:ID"):
        await admin.policy("guild-5")


def test_a_tiers_file_replaces_and_adds_tiers(tmp_path) -> None:
    path = tmp_path / "tiers.toml"
    path.write_text(
        '[tiers.free]\nweight = 1\nimages_per_day = 5\n[tiers.gold]\nweight = 8\n[new_tenants]\ndefault = "gold"\n'
    )
    tiers = Tiers.load(path)
    assert tiers.get("free").limits.images_per_day == 5 and tiers.get("free").limits.concurrent_jobs is None
    assert tiers.get("gold").weight == 8 and tiers.for_new_tenant("discord") == "gold"
    path.write_text("[tiers.free]\nweight = -1\n")
    with pytest.raises(ValueError, match="positive weight"):
        Tiers.load(path)
    path.write_text("[tiers.free]\nimages_per_day = -2\n")
    with pytest.raises(ValueError, match="images-per-day must be 0 or more"):
        Tiers.load(path)


async def test_usage_is_reported_per_user_and_model(admin: Admin, imagine, run_worker) -> None:
    await imagine("discord:9", "alice", "u1", count=2)
    await imagine("discord:9", "bob", "u2", model="tiny-sdxl")
    await run_worker()
    report = await admin.usage("discord:9")
    assert report.total.images == 3 and report.unfinished_jobs == 0
    assert {k: v.images for k, v in report.by_user.items()} == {"alice": 2, "bob": 1}
    assert {k: v.images for k, v in report.by_model.items()} == {"tiny": 2, "tiny-sdxl": 1}
    assert report.total.gpu_seconds > 0
    assert (await admin.usage("discord:9", "month")).total.images == 3
    assert (await admin.usage("discord:9", "2001-01")).total.images == 0
    with pytest.raises(ValueError, match="period must be"):
        await admin.usage("discord:9", "yesterday")


async def test_pause_holds_queued_jobs_in_place_and_resume_puts_them_back(
    runtime, admin: Admin, imagine
) -> None:
    queue = runtime.settings.queue_name
    jobs = [(await imagine("discord:p", f"u{i}", f"p{i}")).job_id for i in range(2)]
    other = (await imagine("discord:q", "u", "q0")).job_id
    scores = {j: await runtime.redis.zscore(queue, j) for j in jobs}

    assert await admin.pause("discord:p") == 2
    assert [await runtime.redis.zscore(queue, j) for j in jobs] == [None, None]
    assert await queue_position(runtime.redis, queue, jobs[0]) == (None, None)
    assert (await queue_position(runtime.redis, queue, other))[0] == 1
    assert await admin.resume("discord:p") == 2
    assert {j: await runtime.redis.zscore(queue, j) for j in jobs} == scores


async def test_pause_holds_every_queue_of_the_tenant_and_held_jobs_never_expire(runtime, imagine) -> None:
    from arq.constants import job_key_prefix

    from jobs.queue import enqueue
    from jobs.specs import ReplyTarget, imagine_spec
    from storage.models import get_or_create_tenant, get_or_create_user

    queue, train = runtime.settings.queue_name, f"{runtime.settings.queue_name}:train-test"
    admin = Admin(runtime.redis, queue, train_queue_name=train)
    image_job = (await imagine("discord:hold", "u", "hold-image")).job_id
    tenant = await get_or_create_tenant("discord", "hold")
    train_job = (
        await enqueue(  # any job on the training queue: the hold does not look at what it is
            runtime.redis,
            imagine_spec(runtime.registry, tiny=True, prompt="a lora", size="64x64", steps=1, seed=1),
            request_id="hold-train",
            reply_target=ReplyTarget(platform="cli"),
            queue_name=train,
            tenant=tenant,
            user=await get_or_create_user(tenant, "u"),
        )
    ).job_id
    score = await runtime.redis.zscore(train, train_job)

    assert await admin.pause("discord:hold") == 2
    assert await runtime.redis.zscore(train, train_job) is None
    for job_id in (image_job, train_job):
        assert await runtime.redis.ttl(job_key_prefix + job_id) == -1  # held: kept however long the pause
    assert await admin.resume("discord:hold") == 2
    assert await runtime.redis.zscore(train, train_job) == score
    for job_id in (image_job, train_job):
        assert 23 * 3600 < await runtime.redis.ttl(job_key_prefix + job_id) <= 24 * 3600


async def test_jobs_are_listed_newest_first_and_cancel_is_scoped_to_the_tenant(admin: Admin, imagine) -> None:
    first = await imagine("discord:L", "u1", "l1")
    second = await imagine("discord:L", "u2", "l2")
    listed = await admin.jobs("discord:L")
    assert [j.id for j in listed] == [second.job_id, first.job_id]
    assert [j.id for j in await admin.jobs("discord:L", user="u1")] == [first.job_id]
    assert await admin.jobs("discord:L", status="running") == []
    with pytest.raises(ValueError, match="unknown status 'done'"):
        await admin.jobs("discord:L", status="done")
    with pytest.raises(LookupError):
        await admin.cancel_job(first.job_id, as_admin=True, tenant="discord:other")
    with pytest.raises(LookupError):
        await admin.cancel_job("nope", as_admin=True)


async def _events(redis, job_id: str) -> list[tuple[str, dict]]:
    entries = await redis.xrange(events.stream_key(job_id))
    return [(f[b"event"].decode(), json.loads(f[b"data"])) for _id, f in entries]


async def test_reservations_nothing_else_will_close_are_closed_on_the_next_admission(
    runtime, imagine, run_worker
) -> None:
    lost = await imagine("discord:R", "u1", "lost")
    tenant = await get_or_create_tenant("discord", "R")
    user = await get_or_create_user(tenant, "u1")
    # A front-end that died between admission and the job record, and a job arq dropped (it expired).
    await reserve(
        "never-recorded", tenant=tenant, user=user, model="tiny", images=1, gpu_ms=10, tiers=Tiers()
    )
    await runtime.redis.delete(f"arq:job:{lost.job_id}")
    await runtime.redis.zrem(runtime.settings.queue_name, lost.job_id)
    assert await reconcile(runtime.redis, runtime.settings.queue_name, tenant) == 0  # too recent to judge
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await QuotaReservation.filter(tenant=tenant).update(created_at=long_ago)

    assert await reconcile(runtime.redis, runtime.settings.queue_name, tenant) == 2
    assert await QuotaReservation.filter(tenant=tenant, state=ReservationState.REFUNDED).count() == 2
    job = await Job.get(id=lost.job_id)
    assert job.status == JobStatus.FAILED and "expired" in job.error
    assert await audit(tenant) == []

    # Its user is told, by a worker (only workers have the platforms' repliers), once.
    assert job.delivered_at is None
    await reconcile(runtime.redis, runtime.settings.queue_name, tenant)  # a second admission: no second word
    await run_worker()
    await job.refresh_from_db()
    assert job.delivered_at is not None
    told = [d for e, d in await _events(runtime.redis, lost.job_id) if e == "failed"]
    assert told == [{"message": "The job expired in the queue or ran out of retries."}]


async def test_safety_and_reaction_emoji_are_per_tenant_and_default_until_set(admin: Admin) -> None:
    assert (await admin.preferences("discord:7")).safety is True  # on until an admin turns it off
    assert not await Preferences.exists()  # reading the defaults writes nothing
    await admin.set_safety("discord:7", False)
    await admin.set_emoji("discord:7", "upscale", "🔎")
    await admin.set_emoji("slack:T7", "faces", ":star-struck:")  # typed as Slack shows it
    seven, slack = await admin.preferences("discord:7"), await admin.preferences("slack:T7")
    assert (seven.safety, seven.upscale_emoji, seven.faces_emoji) == (False, "🔎", "")
    assert (slack.safety, slack.upscale_emoji, slack.faces_emoji) == (True, "", "star-struck")
    assert (await admin.preferences("discord:8")).safety is True  # another server is untouched

    with pytest.raises(ValueError, match="already starts the other action"):
        await admin.set_emoji("discord:7", "faces", "🔎")
    with pytest.raises(ValueError, match="not an emoji"):
        await admin.set_emoji("discord:7", "faces", "two words")
    with pytest.raises(ValueError, match="unknown reaction action 'zoom'"):
        await admin.set_emoji("discord:7", "zoom", "🔎")
    await admin.set_emoji("discord:7", "upscale", "")  # back to the front-end's default
    assert (await admin.preferences("discord:7")).upscale_emoji == ""
