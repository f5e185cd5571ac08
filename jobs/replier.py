"""The `Replier` protocol: how a worker tells whoever asked what is happening to their job.

Each platform supplies one (Discord edits a status message, Slack updates Block Kit, the CLI draws a progress
bar); the composition root injects them into the worker by platform name. `StreamReplier` writes every reply to
the job's Redis event stream as well, so a follower in another process (the CLI) sees the same story.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from PIL import Image as PILImage
from redis.asyncio import Redis

from jobs import events
from storage.models import Job


@dataclass(frozen=True)
class StoredImage:
    """One finished image as stored: where its bytes are and what made it."""

    index: int
    blob_key: str
    width: int
    height: int
    seed: int
    size_bytes: int
    sha256: str
    flagged: bool = False  # by the safety filter (checker or classifier): the front-end decides what to post


class Replier(Protocol):
    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None: ...

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None: ...

    async def result(self, job: Job, images: list[StoredImage]) -> None: ...

    async def failure(self, job: Job, message: str) -> None: ...


class StreamReplier:
    """Appends replies to the job's event stream; a progress preview is kept beside it (`events.store_preview`)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        await events.publish(self._redis, job.id, "queued", position=position, eta_s=eta_s, lane=lane)

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        if preview is not None:  # first, so a follower woken by the event finds this step's preview
            await events.store_preview(self._redis, job.id, preview)
        await events.publish(self._redis, job.id, "progress", step=step, total=total)

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        await events.publish(self._redis, job.id, "result", images=[asdict(i) for i in images])

    async def failure(self, job: Job, message: str) -> None:
        await events.publish(self._redis, job.id, "failed", message=message)


class Fanout:
    """Sends each reply to several repliers in order (the event stream, then the platform's)."""

    def __init__(self, *repliers: Replier) -> None:
        self._repliers = repliers
        self._results_sent: set[int] = set()  # which repliers took the result: a retried delivery skips them

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        for r in self._repliers:
            await r.queued(job, position, eta_s, lane=lane)

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        for r in self._repliers:
            await r.progress(job, step, total, preview)

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        for number, r in enumerate(self._repliers):
            if number not in self._results_sent:
                await r.result(job, images)
                self._results_sent.add(number)

    async def failure(self, job: Job, message: str) -> None:
        for r in self._repliers:
            await r.failure(job, message)


async def relay(redis: Redis, job: Job, replier: Replier) -> None:
    """Replay a job's event stream into `replier` until the job ends (how the CLI follows a remote worker)."""
    async for event, data in events.follow(redis, job.id):
        if event == "queued":
            await replier.queued(
                job, data.get("position"), data.get("eta_s"), lane=data.get("lane") or "fast"
            )
        elif event == "progress":
            await replier.progress(job, data["step"], data["total"], None)
        elif event == "result":
            await replier.result(job, [StoredImage(**i) for i in data["images"]])
        elif event in ("failed", "cancelled"):
            await replier.failure(job, data.get("message", event))
