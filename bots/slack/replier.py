"""The worker's Slack replier: edits the job's status message as it runs, and posts the results in its thread.

Status edits go through `CoalescedEdits` (one every 2 s at most, latest state wins), so the worker's progress
pump never waits for Slack. Results are uploaded with `files_upload_v2` (Slack's three-step external upload)
as PNG, or JPEG when the PNG is big (Slack's image blocks take no WebP), as new replies in the thread, followed
by a message with the action buttons; the status message then says done. Images the safety checker flagged
are withheld while the workspace's filter is on (`safety`). A job cancelled from Slack is not edited again by
progress that was already on its way.

A LoRA training job (`train_lora`) reports steps like any job; its loss is not part of the replier protocol but
goes to the job's event stream (`training` events, at most one a second), so the status shows the latest loss
read from there. Its images are the samples made with the new LoRA: they are uploaded, then announced with how
to use the LoRA (no buttons: the samples are previews, not requests).
"""

from __future__ import annotations

import asyncio
import io
import logging

from PIL import Image as PILImage
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import blocks, ids, safety
from bots.slack.coalesce import CoalescedEdits
from bots.slack.describe_blocks import describe_message, described_status
from jobs import events, moderation
from jobs.delivery import PostedParts
from jobs.replier import StoredImage
from quotas.cancel import cancel_requested
from storage.blobs import BlobStore
from storage.models import Job, JobStatus

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 2.0
STATUS_WAIT_S = 10.0  # how long a job that started at once waits for the app to record its status message
STATUS_POLL_S = 0.1
PNG_LIMIT_BYTES = 8 * 2**20  # above this a result goes as JPEG: same pixels, a fraction of the upload
JPEG_QUALITY = 92
TRAINING = "train_lora"


def encode_for_slack(png: bytes, limit_bytes: int = PNG_LIMIT_BYTES) -> tuple[bytes, str]:
    """The bytes to upload and their extension: the PNG as is when it fits `limit_bytes`, else a JPEG."""
    if len(png) <= limit_bytes:
        return png, "png"
    with PILImage.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), "jpg"


class SlackReplier:
    """One per worker process; keeps an edit stream per job while the job runs."""

    def __init__(
        self,
        client: AsyncWebClient,
        blobs: BlobStore,
        redis: Redis,
        *,
        status_interval_s: float = STATUS_INTERVAL_S,
        png_limit_bytes: int = PNG_LIMIT_BYTES,
    ) -> None:
        self._client, self._blobs, self._redis = client, blobs, redis
        self._interval_s, self._png_limit = status_interval_s, png_limit_bytes
        self._edits: dict[str, CoalescedEdits] = {}
        self._addresses: dict[
            str, dict
        ] = {}  # job id -> its reply target's data, once it has a status message
        self._finishing: set[asyncio.Task] = set()

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        data = _data(job)
        self._status(job).show(
            blocks.queued_status(job.id, job.spec, data.get("user"), position, eta_s, lane)
        )

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        data = _data(job)
        loss = await latest_loss(self._redis, job.id) if job.kind == TRAINING else None
        self._status(job).show(blocks.progress_status(job.id, job.spec, data.get("user"), step, total, loss))

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        data = await self._address(job)
        posted = images
        if any(image.flagged for image in images) and await safety.withholds_flagged(
            job.tenant_id,  # type: ignore[attr-defined]
            data.get("channel"),
        ):
            posted = [image for image in images if not image.flagged]
        withheld = len(images) - len(posted)
        held = [image.index for image in images if image not in posted]
        await moderation.hold_for_review(job, held, data.get("channel"))
        # Each part is recorded once Slack took it: a delivery tried again (jobs.lifecycle retries a failed one)
        # posts only what is missing. A part that fails raises, for that retry.
        parts = PostedParts(self._redis, job.id, "slack")
        if posted and await parts.get("upload") is None:
            await self._upload(job, data, posted)
            await parts.mark("upload")
        if job.kind == TRAINING:
            if await parts.get("ready") is None:
                await self._client.chat_postMessage(
                    channel=data["channel"],
                    thread_ts=data.get("thread_ts"),
                    **blocks.lora_ready_message(job.spec, data.get("user"), len(images)),
                )
                await parts.mark("ready")
            loss = await latest_loss(self._redis, job.id)
            final = blocks.trained_status(job.id, job.spec, data.get("user"), loss)
        elif job.kind == "describe":  # prompts, not images: each with its /imagine button (bots.slack.guided)
            if await parts.get("prompts") is None:
                await self._client.chat_postMessage(
                    channel=data["channel"],
                    thread_ts=data.get("thread_ts"),
                    **describe_message(job.id, job.spec, data.get("user")),
                )
                await parts.mark("prompts")
            final = described_status(job.id, job.spec, data.get("user"))
        else:
            if await parts.get("buttons") is None:
                await self._post_buttons(job, data, posted, withheld)
                await parts.mark("buttons")
            final = blocks.done_status(job.id, job.spec, data.get("user"), len(posted), withheld)
        self._finish(job, final)

    async def failure(self, job: Job, message: str) -> None:
        data = _data(job)
        if job.status == JobStatus.CANCELLED:
            self._finish(
                job, blocks.cancelled_status(job.id, job.spec, data.get("user"), blocks.escape(message))
            )
        else:
            self._finish(job, blocks.failed_status(job.id, job.spec, data.get("user"), message))

    async def aclose(self) -> None:
        """Send the final edits still waiting for their interval (at worker shutdown)."""
        await asyncio.gather(*(edits.wait() for edits in list(self._edits.values())), return_exceptions=True)

    def _status(self, job: Job) -> CoalescedEdits:
        edits = self._edits.get(job.id)
        if edits is None:

            async def send(content: dict, final: bool) -> None:
                if not final and await cancel_requested(self._redis, job.id):
                    return  # the app already showed the cancel; a late progress frame must not undo it
                data = await self._address(job)
                if "status_ts" not in data:
                    log.warning("job %s has no Slack status message to edit", job.id)
                    return
                await self._client.chat_update(channel=data["channel"], ts=data["status_ts"], **content)

            edits = self._edits[job.id] = CoalescedEdits(
                send, interval_s=self._interval_s, name=f"job {job.id}"
            )
        return edits

    def _finish(self, job: Job, content: dict) -> None:
        edits = self._status(job)
        edits.show(content, final=True)
        task = asyncio.get_running_loop().create_task(self._forget_when_sent(job.id, edits))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _forget_when_sent(self, job_id: str, edits: CoalescedEdits) -> None:
        await edits.wait()
        if self._edits.get(job_id) is edits:
            del self._edits[job_id]
            self._addresses.pop(job_id, None)

    async def _address(self, job: Job) -> dict:
        """The job's reply target with its status message. The app records the message just after enqueueing,
        so a job that starts at once may not see it yet: wait for it (bounded), reading the record again."""
        if job.id in self._addresses:
            return self._addresses[job.id]
        data = _data(job)
        for _ in range(round(STATUS_WAIT_S / STATUS_POLL_S)):
            if "status_ts" in data:
                self._addresses[job.id] = data
                return data
            await asyncio.sleep(STATUS_POLL_S)
            fresh = await Job.get_or_none(id=job.id)
            data = _data(fresh) if fresh is not None else data
        return data  # the app never posted one (it died, or the channel refused): results go to the thread

    async def _upload(self, job: Job, data: dict, images: list[StoredImage]) -> None:
        prompt = blocks.title(job.spec)
        uploads = []
        for image in images:
            content, ext = encode_for_slack(await self._blobs.get(image.blob_key), self._png_limit)
            uploads.append(
                {
                    "content": content,
                    "filename": f"atelier-{job.id}-{image.index + 1}.{ext}",
                    "title": f"{prompt[:80]} (seed {image.seed})",
                    "alt_txt": prompt[:1000],
                }
            )
        uploaded = await self._client.files_upload_v2(
            file_uploads=uploads, channel=data["channel"], thread_ts=data.get("thread_ts")
        )
        # Which image each file is: a reaction on the image message acts on it (bots.slack.reactions).
        for image, file in zip(images, uploaded.get("files") or [], strict=False):
            key = ids.result_file_key(file["id"])
            await self._redis.set(key, f"{job.id}:{image.index}", ex=ids.RESULT_MESSAGE_TTL_S)

    async def _post_buttons(self, job: Job, data: dict, images: list[StoredImage], withheld: int) -> None:
        """The message with the action buttons, recorded as showing `job` (what a reaction on it acts on)."""
        posted = await self._client.chat_postMessage(
            channel=data["channel"],
            thread_ts=data.get("thread_ts"),
            **blocks.result_message(job.id, job.spec, data.get("user"), images, withheld),
        )
        key = ids.result_message_key(posted.get("channel", data["channel"]), posted["ts"])
        await self._redis.set(key, job.id, ex=ids.RESULT_MESSAGE_TTL_S)


async def latest_loss(redis: Redis, job_id: str) -> float | None:
    """The loss of the job's latest `training` event on its stream (None before the first one)."""
    data = await events.latest(redis, job_id, "training")
    return None if data is None else data["loss"]


def _data(job: Job) -> dict:
    return (job.reply_target or {}).get("data", {})
