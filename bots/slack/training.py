"""Starting a LoRA training from Slack: the dataset zip checked and enqueued on the training queue, its status
message posted where the worker will report progress (steps, loss) and announce the LoRA.

Both ways in end here: `/atelier lora train NAME TRIGGER <zip link>` (a zip posted in Slack) and the
"Train LoRA…" shortcut (the images of one message, zipped here). `jobs.training.request_training` checks the
name, trigger, model and dataset before anything is stored or charged; its refusals (and a quota's) come back
as CommandErrors with the reason. Only admins get here: the callers check.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import files
from bots.slack.services import SlackServices
from bots.slack.submit import post_status, reply_data
from bots.slack.workspace import Workspace
from engine.training_config import IMAGE_SUFFIXES
from jobs.datasets import MAX_TOTAL_BYTES, zip_folder
from jobs.heartbeat import live_workers
from jobs.specs import ReplyTarget
from jobs.training import request_training
from quotas.errors import QuotaRefused
from storage.models import Job

ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
MIME_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


async def start_training(
    client: AsyncWebClient,
    services: SlackServices,
    *,
    workspace: Workspace,
    name: str,
    trigger: str,
    dataset_zip: bytes,
    steps: int | None,
    request_id: str,
    channel: str,
    thread_ts: str | None,
) -> str | None:
    """Enqueue the training once for `request_id` and post its status message; return the job id (None for a
    request seen before)."""
    if services.train_queue_name is None:
        raise CommandError("LoRA training is not set up on this Atelier (no training queue).")
    data = reply_data(channel, thread_ts, workspace)
    try:
        queued = await request_training(
            services.redis,
            services.blobs,
            services.registry,
            tenant=await workspace.tenant(),
            user=await workspace.user(),
            name=name,
            trigger=trigger,
            dataset_zip=dataset_zip,
            request_id=request_id,
            reply_target=ReplyTarget(platform="slack", data=data),
            queue_name=services.train_queue_name,
            tiers=services.tiers,
            tiny=services.tiny_models,
            steps=steps,
        )
    except QuotaRefused as refusal:
        raise CommandError(str(refusal)) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    job = await Job.get(id=queued.job_id)
    return await post_status(client, services, queued, job.spec, data, request_id=request_id)


async def unserved_note(redis: Redis, queue_name: str | None) -> str:
    """A sentence for the admin when no worker serves the training queue right now (the job waits for one),
    else ""; a deployment whose workers serve only images would otherwise show "Queued" forever."""
    if queue_name is None or await live_workers(redis, queue_name):
        return ""
    return (
        "No worker serves the training queue right now: the training starts when one does "
        "(`atelier worker --queues train`, or `--queues images,train`)."
    )


async def zip_from_link(client: AsyncWebClient, link: str) -> bytes:
    """The zip a file permalink names, downloaded with the bot token (bounded by the dataset's size limit)."""
    file = await files.linked_file(client, link)
    name = files.display_name(file)
    if file.get("mimetype") not in ZIP_TYPES and file.get("filetype") != "zip" and not name.endswith(".zip"):
        raise CommandError(f"{name} is not a zip: zip the images (and any .txt captions) and post that.")
    return await files.file_bytes(file, client, max_bytes=MAX_TOTAL_BYTES)


async def zip_of_images(images: list[dict], client: AsyncWebClient) -> bytes:
    """The images of a message as a dataset zip (`jobs.datasets.zip_folder`), each downloaded bounded and named
    by its position, so names from Slack never become paths here."""
    with tempfile.TemporaryDirectory(prefix="atelier-slack-dataset-") as scratch:
        folder = Path(scratch)
        for i, file in enumerate(images):
            (folder / f"image{i + 1:03d}{_suffix(file)}").write_bytes(await files.file_bytes(file, client))
        return zip_folder(folder)


def _suffix(file: dict) -> str:
    suffix = Path(files.display_name(file)).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    return MIME_SUFFIXES.get(str(file.get("mimetype")), ".png")
