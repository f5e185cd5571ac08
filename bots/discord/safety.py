"""What the Discord bot does with a flagged image (`StoredImage.flagged`: the uniform image classifier or the
model's own checker flagged it, engine.classifiers and engine.safety), by the channel's policy (jobs.moderation):

- `allow`: posted like any other. `spoiler`: posted as a spoiler (`SPOILER_` file name) in any channel.
- `age-restricted` (the default while the server's `safety` preference is on): a spoiler in a channel Discord
  marks age-restricted (`nsfw`, or the parent of the thread it was asked in), withheld elsewhere.
- `withhold`: withheld everywhere.

A withheld image goes to the server's review queue (`/atelier review`); the result message says how many were
withheld and why. No button is offered for a withheld image, so it cannot be upscaled or varied out of hiding,
and the images of a job made from a flagged image (a U, V or F button on a spoiler, a reaction on it) count as
flagged too. An image an admin approved in review is no longer withheld. Its bytes stay in the blob store like
every result; only posting is held back.

The channel's age-restricted flag is read when the job is asked for (the interaction carries the channel) and
travels with the job (`DiscordTarget.age_restricted`); the policy is read by the worker when it delivers, so a
change applies to jobs still in the queue. The policy is the one of the channel the status message is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from jobs import moderation
from jobs.replier import StoredImage
from storage.models import Image, Job
from storage.moderation import SafetyReview

INPUTS = "inputs/"  # jobs.inputs.store_input's keys: inputs/<sha256 of the PNG>.png
SPOILER_PREFIX = "SPOILER_"  # Discord blurs an attachment whose file name starts with this
WITHHELD = (
    "🔞 {count} withheld: the safety classifier flagged {them}, and this channel's safety policy ({policy}) does "
    "not show {them} here; a server admin can review {them} with `/atelier review`."
)


@dataclass(frozen=True)
class Shown:
    image: StoredImage
    spoiler: bool


def age_restricted(channel: object) -> bool:
    """Whether a channel (or a thread's parent) is marked age-restricted; False when it cannot be told."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def source_flagged(spec: dict) -> bool:
    """Whether a job made from an image started from a flagged one: a stored result (a U, V or F button), or an
    upload with the very pixels of one (a reaction on a spoiler, the file posted again). Inputs are stored
    under the sha256 of their PNG, made as results' are, so the same pixels have the same digest. Its own
    images then count as flagged too, so an upscale cannot bring a withheld picture out of hiding."""
    key = spec.get("image")
    if not key:
        return False
    if key.startswith(INPUTS):
        digest = PurePosixPath(key).stem
        return await Image.filter(sha256=digest, flagged=True).exists()
    return await Image.filter(blob_key=key, flagged=True).exists()


async def channel_policy(job: Job) -> str:
    """The policy of the channel `job` was asked in (jobs.moderation)."""
    channel = (job.reply_target or {}).get("data", {}).get("channel_id")
    return await moderation.policy_for(job.tenant_id, None if channel is None else str(channel))  # type: ignore[attr-defined]


async def withheld(job: Job, image: Image) -> bool:
    """Whether `image` of `job` is withheld by the rules above (the policy as it is now, unless an admin
    approved it): a button or reaction must not act on it."""
    if not (image.flagged or await source_flagged(job.spec)):
        return False
    if await SafetyReview.filter(image_id=image.id, decision="approved").exists():
        return False
    restricted = bool((job.reply_target or {}).get("data", {}).get("age_restricted"))
    policy = await channel_policy(job)
    return moderation.disposition(policy, flagged=True, age_restricted=restricted) == moderation.WITHHOLD


def sort_out(
    images: Sequence[StoredImage], *, policy: str, age_restricted: bool, source_flagged: bool = False
) -> tuple[list[Shown], list[StoredImage]]:
    """The images to post (spoilered or not) and those withheld, by the channel's `policy` (rules above)."""
    shown, withheld = [], []
    for image in images:
        what = moderation.disposition(
            policy, flagged=image.flagged or source_flagged, age_restricted=age_restricted
        )
        if what == moderation.WITHHOLD:
            withheld.append(image)
        else:
            shown.append(Shown(image, spoiler=what == moderation.SPOILER))
    return shown, withheld


def withheld_line(count: int, policy: str) -> str:
    what = "1 image" if count == 1 else f"{count} images"
    return WITHHELD.format(count=what, them="it" if count == 1 else "them", policy=policy)
