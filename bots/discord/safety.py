"""What the Discord bot does with an image the model's safety checker flagged (`StoredImage.flagged`).

The decision, per server (its `safety` preference, on unless an admin runs `/atelier safety off`):
- Safety on, and the job was asked for in an age-restricted channel (Discord's `nsfw` switch on the channel, or
  on the parent of the thread it was asked in): the image is posted as a spoiler (`SPOILER_` file name), so
  nobody sees it without clicking.
- Safety on, anywhere else: the image is withheld. The result message says how many were withheld, why (the
  safety checker flagged them) and where to ask instead (an age-restricted channel, or a server admin about
  `/atelier safety`). No button is offered for a withheld image, so it cannot be upscaled or varied out of
  hiding, and the images of a job made from a flagged image (a U, V or F button on a spoiler, a reaction on
  it) count as flagged too. Its bytes stay in the blob store like every result; only posting is held back.
- Safety off: flagged images are posted like any other.

Images that are not flagged are always posted normally. The channel's flag is read when the job is asked for
(the interaction carries the channel) and travels with the job (`DiscordTarget.age_restricted`); the server's
preference is read by the worker when it delivers, so a change applies to jobs still in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from jobs.replier import StoredImage
from storage.models import Image, Job, Tenant
from storage.preferences import preferences_of

INPUTS = "inputs/"  # jobs.inputs.store_input's keys: inputs/<sha256 of the PNG>.png
SPOILER_PREFIX = "SPOILER_"  # Discord blurs an attachment whose file name starts with this
WITHHELD = (
    "🔞 {count} withheld: the safety checker flagged {them}, and this server shows flagged images only in "
    "age-restricted channels. Ask again in one, or ask a server admin about `/atelier safety`."
)


@dataclass(frozen=True)
class Shown:
    image: StoredImage
    spoiler: bool


def age_restricted(channel: object) -> bool:
    """Whether a channel (or a thread's parent) is marked age-restricted; False when it cannot be told."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def safety_on(tenant_id: int | None) -> bool:
    """The server's `safety` preference (on by default, and for a job with no tenant)."""
    tenant = None if tenant_id is None else await Tenant.get_or_none(id=tenant_id)
    return True if tenant is None else (await preferences_of(tenant)).safety


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


async def withheld(job: Job, image: Image) -> bool:
    """Whether `image` of `job` is withheld by the rules above (the server's preference as it is now): a button
    or reaction must not act on it."""
    if not (image.flagged or await source_flagged(job.spec)):
        return False
    restricted = bool((job.reply_target or {}).get("data", {}).get("age_restricted"))
    return await safety_on(job.tenant_id) and not restricted  # type: ignore[attr-defined]


def sort_out(
    images: Sequence[StoredImage], *, safety: bool, age_restricted: bool, source_flagged: bool = False
) -> tuple[list[Shown], int]:
    """The images to post (spoilered or not) and how many are withheld, by the rules above."""
    shown, withheld = [], 0
    for image in images:
        if not ((image.flagged or source_flagged) and safety):
            shown.append(Shown(image, spoiler=False))
        elif age_restricted:
            shown.append(Shown(image, spoiler=True))
        else:
            withheld += 1
    return shown, withheld


def withheld_line(count: int) -> str:
    what = "1 image" if count == 1 else f"{count} images"
    return WITHHELD.format(count=what, them="it" if count == 1 else "them")
