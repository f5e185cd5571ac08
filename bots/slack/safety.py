"""The safety filter in Slack: what happens to flagged images (the uniform image classifier or the model's own
checker flagged them: engine.classifiers, engine.safety), by the channel's policy (jobs.moderation).

Slack has no spoiler and no counterpart of Discord's age-restricted channels, so only `allow` posts a flagged
image; `spoiler`, `age-restricted` (the default while the workspace's `safety` preference is on) and `withhold`
all withhold it: not uploaded, no buttons, a line in the thread says how many were, and it goes to the
workspace's review queue (`/atelier review`, bots.slack.review). An admin sets a channel's policy with
`/atelier safety --policy P` typed in it (`--server` for the workspace's default). Reactions and buttons never
act on a withheld image, unless an admin approved it in review.
"""

from __future__ import annotations

from jobs import moderation
from storage.models import Job
from storage.moderation import SafetyReview


def job_channel(job: Job) -> str | None:
    """The channel a job was asked in."""
    return (job.reply_target or {}).get("data", {}).get("channel")


async def withholds_flagged(tenant_id: int | None, channel: str | None = None) -> bool:
    """Whether flagged images are withheld in `channel` of the workspace (tenant `tenant_id`)."""
    policy = await moderation.policy_for(tenant_id, channel)
    return (
        moderation.disposition(policy, flagged=True, age_restricted=False, spoilers=False)
        == moderation.WITHHOLD
    )


async def approved(image_id: int) -> bool:
    """Whether an admin approved this (withheld) image in review."""
    return await SafetyReview.filter(image_id=image_id, decision="approved").exists()
