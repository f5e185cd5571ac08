"""Whose a job is: the check every front-end makes before it acts on a job that a click, a reaction or a form
names by id.

A button's id carries a job id, and so can a payload someone built by hand. Slack Connect channels hold members
of other workspaces, whose clicks arrive with their own team. So a job is acted on only for a caller of the
tenant it belongs to: a job of another tenant (or of none, the CLI's) is refused with `ForeignJob` before
anything is read from it, posted or enqueued. Each front-end says it in its own words.
"""

from __future__ import annotations

from storage.models import Job


class ForeignJob(Exception):
    """The job named belongs to another tenant than the caller's."""


async def job_for(job_id: str, platform: str, external_id: str | None) -> Job | None:
    """Job `job_id` for a caller of tenant (`platform`, `external_id`): None when there is no such job;
    ForeignJob when it is another tenant's (a caller with no tenant, a DM, has none of its own)."""
    job = await Job.filter(id=job_id).select_related("tenant").first()
    if job is None:
        return None
    tenant = job.tenant
    if (
        external_id is None
        or tenant is None
        or (tenant.platform, tenant.external_id) != (platform, external_id)
    ):
        raise ForeignJob(f"job {job_id} is not a job of {platform}:{external_id}")
    return job
