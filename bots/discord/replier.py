"""The worker's Discord replier: progress edits on the status message, results posted in the job's thread.

Progress is coalesced per message: `progress()` only records the latest state and returns at once (the GPU
path never waits on Discord); one task per job sends whatever is latest when the message's next edit slot
comes (see `editclock`), so a slow or rate-limited Discord costs frames, never GPU time. A failed frame is
skipped; a 429 pushes the next one back by its `retry_after`.

Edits and posts use the interaction token while it is usable (younger than 14 minutes) and bot-token channel
endpoints after that, or as soon as Discord says the token is dead; a dead token is never tried again.

Private mode (`/settings`): results are ephemeral followups for the asker while the token lives; after that they
go to the asker's direct messages, never to the channel. When the asker's DMs are closed too, the part is
recorded as failed with its reason (`jobs.delivery`), logged and counted; the job and its images stay stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from PIL import Image as PILImage

from bots.discord import safety
from bots.discord.attachments import UploadFile, fit_image, preview_jpeg
from bots.discord.components import SEEDED_KINDS, result_components
from bots.discord.describe_rows import describe_rows, describe_text
from bots.discord.editclock import EditClock
from bots.discord.rest import DiscordHTTPError, DiscordRest, RateLimited, TokenExpired
from bots.discord.status import (
    cancelled_text,
    done_text,
    failed_text,
    lora_ready_text,
    progress_text,
    queued_text,
    quote_prompt,
    trained_text,
)
from bots.discord.target import DiscordTarget
from jobs import events, metrics, moderation
from jobs.delivery import PostedParts, failed_reason
from jobs.replier import StoredImage
from storage.blobs import BlobStore
from storage.models import Job, JobStatus

log = logging.getLogger(__name__)

EPHEMERAL_FLAG = 64  # a message only the interaction's user sees (private mode)

TRYING = "trying"  # a result part being posted: a delivery that finds it so checks whether it got there
POSTED_WHERE = frozenset({"thread", "channel", "ephemeral", "dm"})  # a part recorded so is there already
CANNOT_DM = 50007  # "Cannot send messages to this user": DMs closed, or no server shared with the bot
DM_NOTE = "-# Private mode: sent here because the command's 15-minute window in the server had passed."
WEBHOOK_TRIES = 5

MAX_FILES_PER_MESSAGE = 10
MAX_REQUEST_BYTES = 25 * 1024 * 1024
MULTIPART_MARGIN = 64 * 1024  # room for payload_json and the multipart framing
NO_MENTIONS = {"parse": []}
TRAINING = "train_lora"
THREAD_UNUSABLE = frozenset(
    {10003, 50001, 50013, 50083}
)  # unknown channel, no access or permission, archived


class DiscordReplier:
    def __init__(self, rest: DiscordRest, blobs: BlobStore, clock: EditClock) -> None:
        self._rest, self._blobs, self._clock = rest, blobs, clock
        self._editors: dict[str, _StatusEditor] = {}
        self._dead_tokens: set[str] = set()

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        target = _target(job)
        self._editor(job, target).offer(queued_text(target.prompt, position, eta_s, lane), None)

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        target = _target(job)
        loss = await self._loss(job) if job.kind == TRAINING else None
        self._editor(job, target).offer(progress_text(target.prompt, step, total, loss), preview)

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        target = _target(job)
        await self._stop_editor(job.id)
        policy = await safety.channel_policy(job)
        shown, held = safety.sort_out(
            images,
            policy=policy,
            age_restricted=target.age_restricted,
            source_flagged=await safety.source_flagged(job.spec),
        )
        await moderation.hold_for_review(job, [image.index for image in held], str(target.channel_id))
        withheld = len(held)
        in_thread = await self._post_result(job, target, images, shown, withheld, policy)
        if job.kind == TRAINING:
            text = trained_text(target.prompt, job.spec["name"], await self._loss(job), in_thread=in_thread)
        else:
            text = done_text(target.prompt, len(shown), in_thread=in_thread, withheld=withheld)
        await self._final_edit(target, text)

    async def failure(self, job: Job, message: str) -> None:
        target = _target(job)
        await self._stop_editor(job.id)
        cancelled = job.status == JobStatus.CANCELLED
        text = cancelled_text(target.prompt, message) if cancelled else failed_text(target.prompt, message)
        await self._final_edit(target, text)

    async def _loss(self, job: Job) -> float | None:
        """A training's latest loss: its `training` events go to the job's stream, not through the replier."""
        latest = await events.latest(self._clock.redis, job.id, "training")
        return None if latest is None else float(latest["loss"])

    async def aclose(self) -> None:
        for job_id in list(self._editors):
            await self._stop_editor(job_id)
        await self._rest.close()

    # Status message.

    def _editor(self, job: Job, target: DiscordTarget) -> _StatusEditor:
        editor = self._editors.get(job.id)
        if editor is None:

            async def send(content: str, preview: PILImage.Image | None) -> None:
                payload: dict = {"content": content, "allowed_mentions": NO_MENTIONS}
                files: list[UploadFile] = []
                if preview is not None:
                    files.append(UploadFile("preview.jpg", preview_jpeg(preview), "image/jpeg"))
                    payload["attachments"] = [{"id": 0, "filename": "preview.jpg"}]
                await self._edit_status(target, payload, files, retry_rate_limits=False)

            async def cancelled() -> bool:
                if await Job.filter(id=job.id, status=JobStatus.CANCELLED).exists():
                    self._editors.pop(job.id, None)  # no result or failure will come to remove it
                    return True
                return False

            editor = _StatusEditor(self._clock, target.message_id, send, cancelled)
            self._editors[job.id] = editor
        return editor

    async def _stop_editor(self, job_id: str) -> None:
        editor = self._editors.pop(job_id, None)
        if editor is not None:
            await editor.close()

    async def _final_edit(self, target: DiscordTarget, content: str) -> None:
        """The last word on the status message: no buttons, no preview; retried through rate limits."""
        payload = {"content": content, "components": [], "attachments": [], "allowed_mentions": NO_MENTIONS}
        async with self._clock.turn(target.message_id):
            await self._edit_status(target, payload, (), retry_rate_limits=True)

    async def _edit_status(
        self, target: DiscordTarget, payload: dict, files: Sequence[UploadFile], *, retry_rate_limits: bool
    ) -> None:
        if self._token_usable(target):
            try:
                path = f"/webhooks/{target.application_id}/{target.token}/messages/@original"
                await self._rest.request(
                    "PATCH",
                    path,
                    payload=payload,
                    files=files,
                    bot_auth=False,
                    retry_rate_limits=retry_rate_limits,
                )
                return
            except TokenExpired:
                self._token_died(target)
        if target.private:
            return  # an ephemeral message can only be edited through its interaction's token
        path = f"/channels/{target.channel_id}/messages/{target.message_id}"
        await self._rest.request(
            "PATCH", path, payload=payload, files=files, retry_rate_limits=retry_rate_limits
        )

    # Results.

    async def _post_result(
        self,
        job: Job,
        target: DiscordTarget,
        images: list[StoredImage],
        shown: list[safety.Shown],
        withheld: int,
        policy: str = "",
    ) -> bool:
        """Post the shown images (ten files a message; a text alone when all were withheld); return whether
        they went into the job's thread."""
        chunks = [shown[i : i + MAX_FILES_PER_MESSAGE] for i in range(0, len(shown), MAX_FILES_PER_MESSAGE)]
        if job.kind == "describe":  # prompts, not images: each with its /imagine button (bots.discord.guided)
            caption = describe_text(target.user_id, job.spec.get("prompts", []))
            buttons = describe_rows(job.id, job.spec.get("prompts", []))
        else:
            caption = _result_caption(job, target, images)
            buttons = result_components(job.id, len(images), job.kind, shown=[s.image.index for s in shown])
        if withheld:
            caption += "\n" + safety.withheld_line(withheld, policy)
        posted = PostedParts(self._clock.redis, job.id, "discord")
        in_thread = False
        for number, chunk in enumerate(chunks or [[]]):
            where = await posted.get(f"result:{number}")
            if where in POSTED_WHERE:  # a delivery tried again: this part is there already
                in_thread = where == "thread"
                continue
            if failed_reason(where) is not None:  # recorded as undeliverable: not tried again
                continue
            per_file = min(
                target.attachment_size_limit, (MAX_REQUEST_BYTES - MULTIPART_MARGIN) // max(1, len(chunk))
            )
            uploads = [
                fit_image(await self._blobs.get(s.image.blob_key), _file_name(job, s), per_file)
                for s in chunk
            ]
            payload = {
                "content": caption if number == 0 else "",
                "attachments": [{"id": i, "filename": u.filename} for i, u in enumerate(uploads)],
                "components": buttons if number == 0 else [],
                "allowed_mentions": {"parse": [], "users": [str(target.user_id)]},
                # The same part posted again within minutes (a crash between the post and the record below)
                # returns Discord's first message instead of a second one; webhooks ignore it.
                "nonce": f"{job.id}:{number}"[:25],
                "enforce_nonce": True,
            }
            if target.private:
                await posted.mark(f"result:{number}", TRYING)
                try:
                    await posted.mark(f"result:{number}", await self._post_private(target, payload, uploads))
                except Undeliverable as exc:
                    await self._undeliverable(job, posted, number, len(chunks or [[]]), exc.reason)
                    break
                continue
            if where == TRYING and await self._posted_already(target, uploads):
                await posted.mark(f"result:{number}", "channel")  # a webhook post whose answer was lost
                continue
            await posted.mark(f"result:{number}", TRYING)
            in_thread = await self._post(target, payload, uploads)
            await posted.mark(f"result:{number}", "thread" if in_thread else "channel")
        return in_thread

    async def _post_private(self, target: DiscordTarget, payload: dict, uploads: Sequence[UploadFile]) -> str:
        """A private result for the asker alone: an ephemeral followup while the token lives ("ephemeral"),
        else a direct message ("dm"; its nonce absorbs a repeat). Never the channel. Raises Undeliverable when
        Discord refuses the DM (the asker's DMs are closed)."""
        if self._token_usable(target):
            try:
                path = f"/webhooks/{target.application_id}/{target.token}"
                await self._rest.request(
                    "POST",
                    path,
                    payload={**payload, "flags": EPHEMERAL_FLAG},
                    files=uploads,
                    bot_auth=False,
                    query={"wait": "true"},
                    retry_server_errors=False,
                )
                return "ephemeral"
            except TokenExpired:
                self._token_died(target)
        # Buttons stay off: a click in a DM has no server to act in (bots.discord.permissions).
        direct = {**payload, "content": f"{payload['content']}\n{DM_NOTE}".strip(), "components": []}
        try:
            channel = await self._rest.request(
                "POST", "/users/@me/channels", payload={"recipient_id": str(target.user_id)}
            )
            path = f"/channels/{channel['id']}/messages"  # type: ignore[index, call-overload]
            await self._rest.request("POST", path, payload=direct, files=uploads)
        except DiscordHTTPError as exc:
            if exc.status == 403 or exc.code == CANNOT_DM:
                raise Undeliverable(f"DMs closed (Discord {exc.status}, code {exc.code})") from exc
            raise
        return "dm"

    async def _undeliverable(
        self, job: Job, posted: PostedParts, first: int, parts: int, reason: str
    ) -> None:
        """Record parts `first`… of a private result as failed with `reason`; log and count it once."""
        for number in range(first, parts):
            await posted.mark_failed(f"result:{number}", reason)
        metrics.DELIVERIES_FAILED.labels("discord").inc()
        log.warning(
            "job %s: private result not delivered: the interaction token expired and the asker's %s; the "
            "images stay stored (gallery, `atelier`)",
            job.id,
            reason,
        )

    async def _post(self, target: DiscordTarget, payload: dict, uploads: Sequence[UploadFile]) -> bool:
        """Into the job's thread; else (no thread, or it could not be made) next to the status message: a
        followup while the token is usable, a bot-token reply after that. Returns whether it went in the thread.
        (Private results go through `_post_private`.)"""
        if target.thread_id is not None:
            try:
                path = f"/channels/{target.thread_id}/messages"
                await self._rest.request("POST", path, payload=payload, files=uploads)
                return True
            except DiscordHTTPError as exc:
                if exc.code not in THREAD_UNUSABLE:
                    raise
                log.info(
                    "discord: thread %s unusable (%s); posting next to the status", target.thread_id, exc
                )
        if self._token_usable(target):
            path = f"/webhooks/{target.application_id}/{target.token}"
            for attempt in range(1, WEBHOOK_TRIES + 1):
                try:
                    await self._rest.request(
                        "POST",
                        path,
                        payload=payload,
                        files=uploads,
                        bot_auth=False,
                        query={"wait": "true"},
                        retry_server_errors=False,
                    )
                    return False
                except TokenExpired:
                    self._token_died(target)
                    break
                except (DiscordHTTPError, aiohttp.ClientError, TimeoutError) as exc:
                    if (isinstance(exc, DiscordHTTPError) and exc.status < 500) or attempt == WEBHOOK_TRIES:
                        raise
                    # Webhooks take no nonce, and Discord may have posted it before failing: look first.
                    await asyncio.sleep(min(2**attempt, 10))
                    if await self._posted_already(target, uploads):
                        return False
        reference = {"message_id": str(target.reply_to or target.message_id), "fail_if_not_exists": False}
        path = f"/channels/{target.channel_id}/messages"
        await self._rest.request(
            "POST", path, payload={**payload, "message_reference": reference}, files=uploads
        )
        return False

    async def _posted_already(self, target: DiscordTarget, uploads: Sequence[UploadFile]) -> bool:
        """Whether a post of `uploads` next to the status message is there already: an earlier try whose
        answer was a server error, or was lost with the worker. Webhook posts have no nonce, so this reads the
        channel after the status message (Read Message History; without it, it says no and risks a double)."""
        names = [u.filename for u in uploads]
        path = f"/channels/{target.channel_id}/messages"
        try:
            found = await self._rest.request(
                "GET", path, query={"after": str(target.message_id), "limit": "100"}
            )
        except (DiscordHTTPError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("discord: could not check channel %s for an earlier post (%s)", target.channel_id, exc)
            return False
        return any(
            str(m.get("author", {}).get("id")) == str(target.application_id)
            and [a.get("filename") for a in m.get("attachments", [])] == names
            for m in found or []
            if isinstance(m, dict)
        )

    # Tokens.

    def _token_usable(self, target: DiscordTarget) -> bool:
        return target.token not in self._dead_tokens and target.token_usable()

    def _token_died(self, target: DiscordTarget) -> None:
        log.info(
            "discord: interaction %s token is dead; using the bot token from now on", target.interaction_id
        )
        if len(self._dead_tokens) > 10_000:  # tokens die within 15 minutes anyway: forget old ones
            self._dead_tokens.clear()
        self._dead_tokens.add(target.token)


class Undeliverable(Exception):
    """A private result that cannot reach its asker by any way allowed; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _StatusEditor:
    """Sends the latest state of one job to its status message, one edit per slot; older states are dropped."""

    def __init__(
        self,
        clock: EditClock,
        message_id: int,
        send: Callable[[str, PILImage.Image | None], Awaitable[None]],
        cancelled: Callable[[], Awaitable[bool]],
    ) -> None:
        self._clock, self._message_id, self._send, self._cancelled = clock, message_id, send, cancelled
        self._pending: tuple[str, PILImage.Image | None] | None = None
        self._task: asyncio.Task | None = None
        self._waiting = False  # True while it waits for an edit slot (safe to cancel then)

    def offer(self, content: str, preview: PILImage.Image | None) -> None:
        """Record the latest state; never waits."""
        self._pending = (content, preview)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Drop what is pending. An edit already under way finishes first, so the final edit comes after it."""
        self._pending = None
        task = self._task
        if task is None or task.done():
            return
        if self._waiting:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        not_before = 0.0
        while self._pending is not None:
            self._waiting = True
            try:
                token = await self._clock.acquire(self._message_id, not_before=not_before)
            finally:
                self._waiting = False
            edited = False
            try:
                state, self._pending = self._pending, None
                if state is None or await self._cancelled():
                    return  # closed meanwhile, or the Cancel button already rewrote the message
                edited = True
                await self._send(*state)
                not_before = 0.0
            except RateLimited as exc:
                if self._pending is None:
                    self._pending = state  # nothing newer came: try this one again after the wait
                not_before = time.time() + exc.retry_after
            except Exception:
                log.warning("discord: a progress edit of message %s failed", self._message_id, exc_info=True)
            finally:
                await self._clock.release(self._message_id, token, edited=edited)


def _target(job: Job) -> DiscordTarget:
    return DiscordTarget.from_data((job.reply_target or {})["data"])


def _file_name(job: Job, shown: safety.Shown) -> str:
    name = f"{job.id}-{shown.image.index}.png"
    return safety.SPOILER_PREFIX + name if shown.spoiler else name


def _result_caption(job: Job, target: DiscordTarget, images: Sequence[StoredImage]) -> str:
    if job.kind == TRAINING:
        return f"<@{target.user_id}> {lora_ready_text(job.spec['name'], job.spec['trigger'])}"
    details = [job.model]
    if job.kind in SEEDED_KINDS:
        first, last = images[0].seed, images[-1].seed
        details.append(f"seed {first}" if first == last else f"seeds {first}–{last}")
    details.append(f"{images[0].width}×{images[0].height}")
    return f"<@{target.user_id}> {quote_prompt(target.prompt)}\n{' · '.join(details)}"
