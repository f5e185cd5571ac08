"""What a flagged image does in a channel, the review queue of withheld images, and its decisions.

A server's admins set a policy per channel (`/atelier safety policy ...` in the channel; the server default with
`atelier admin safety TENANT --policy ...`). For an image the safety classifiers flagged (engine.classifiers,
engine.safety), or one made from a flagged image:

- `allow`: posted like any other.
- `spoiler`: posted hidden behind a spoiler (Discord's `SPOILER_` file name). Slack has no spoiler: there it
  is withheld.
- `age-restricted`: posted as a spoiler only where the platform marks the channel as adult (Discord's
  age-restricted channels, or a thread in one); withheld elsewhere. Slack has no such flag, so it withholds.
  This is the default of a server whose `safety` preference is on (the default); with it off, `allow`.
- `withhold`: never posted.

Every withheld image goes to the server's review queue (`/atelier review`). Approving posts it where it was
asked (jobs.replier's `approved`, by the front-end that asked); deleting removes its blob and row. Every
decision is logged with who made it (`SafetyReview`, `atelier admin review log`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from jobs.retention import thumb_key
from storage.blobs import BlobStore
from storage.models import Image, Job, Tenant
from storage.moderation import POLICIES, SERVER_DEFAULT, ChannelPolicy, SafetyReview, set_policy  # noqa: F401
from storage.preferences import preferences_of

POST, SPOILER, WITHHOLD = "post", "spoiler", "withhold"


class ReviewError(ValueError):
    """A review decision that cannot be made (an unknown or already decided review); the message says why."""


async def policy_for(tenant_id: int | None, channel: str | None) -> str:
    """The policy of `channel` in the tenant: its own, else the server's default, else from `safety`."""
    if tenant_id is None:
        return "age-restricted"
    rows = {
        row.channel: row.policy
        for row in await ChannelPolicy.filter(
            tenant_id=tenant_id, channel__in=[channel or "", SERVER_DEFAULT]
        )
    }
    if channel and channel in rows:
        return rows[channel]
    if SERVER_DEFAULT in rows:
        return rows[SERVER_DEFAULT]
    tenant = await Tenant.get_or_none(id=tenant_id)
    on = tenant is None or (await preferences_of(tenant)).safety
    return "age-restricted" if on else "allow"


def disposition(policy: str, *, flagged: bool, age_restricted: bool, spoilers: bool = True) -> str:
    """What happens to one image: POST, SPOILER or WITHHOLD (see the module doc). `spoilers`: whether the
    platform can hide an image behind one (Slack cannot)."""
    if not flagged or policy == "allow":
        return POST
    if policy == "spoiler" or (policy == "age-restricted" and age_restricted):
        return SPOILER if spoilers else WITHHOLD
    return WITHHOLD


@dataclass(frozen=True)
class Pending:
    review: SafetyReview
    prompt: str
    asker: str


async def hold_for_review(job: Job, indexes: list[int], channel: str | None) -> None:
    """Put the withheld images (by index) of `job` in its server's review queue (once each: a delivery may run
    twice). An image an admin already approved is not queued again."""
    if job.tenant_id is None or not indexes:  # type: ignore[attr-defined]
        return
    for image in await Image.filter(job_id=job.id, index__in=indexes):
        await SafetyReview.get_or_create(
            defaults={
                "tenant_id": job.tenant_id,  # type: ignore[attr-defined]
                "job_id": job.id,
                "blob_key": image.blob_key,
                "channel": channel or "",
            },
            image_id=image.id,
        )


async def pending(tenant: Tenant, limit: int = 25) -> list[SafetyReview]:
    """The server's reviews waiting for a decision, oldest first."""
    return await SafetyReview.filter(tenant=tenant, decision="").order_by("id").limit(limit)


async def decide(
    tenant: Tenant, review_id: int, decision: str, *, reviewer: str, blobs: BlobStore
) -> SafetyReview:
    """Approve or delete a waiting review of `tenant`, logged with `reviewer`. Deleting removes the image's blob
    and row (its thumbnail too, as retention does); approving leaves them for the front-end to post. Only the
    first of two concurrent decisions counts: the other raises ReviewError."""
    if decision not in ("approve", "delete"):
        raise ReviewError(f"a review is approved or deleted (got {decision!r})")
    review = await SafetyReview.get_or_none(id=review_id, tenant=tenant)
    if review is None:
        raise ReviewError(f"there is no review #{review_id} on this server")
    done = "approved" if decision == "approve" else "deleted"
    now = datetime.now(UTC)
    taken = await SafetyReview.filter(id=review.id, decision="").update(
        decision=done, reviewer=reviewer, decided_at=now
    )
    if not taken:
        await review.refresh_from_db()
        raise ReviewError(f"review #{review.id} was already {review.decision} by {review.reviewer}")
    if done == "deleted":
        image = await Image.get_or_none(id=review.image_id)
        await blobs.delete(review.blob_key)
        await Image.filter(id=review.image_id).delete()
        if image is not None and not await Image.filter(sha256=image.sha256).exists():
            await blobs.delete(thumb_key(image.sha256))  # the gallery's, shared by identical images
    await review.refresh_from_db()
    return review


async def log(tenant: Tenant, limit: int = 50) -> list[SafetyReview]:
    """The server's decided reviews, newest first."""
    return await SafetyReview.filter(tenant=tenant).exclude(decision="").order_by("-decided_at").limit(limit)
