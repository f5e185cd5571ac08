"""Job events in a Redis stream per job: what happened to a job, readable by anyone who follows it.

Workers append `queued`, `started`, `progress`, `result` and `failed` events; the CLI follows a job's stream to
draw its progress bar, and later front-ends can read it too. A stream (not pub/sub) lets a follower that arrives
late still read from the beginning. Progress events are trimmed to the latest few; streams expire after a day.

The latest progress preview of a running job is kept beside its stream (`store_preview`, one small JPEG per
job, replaced at each step and gone `PREVIEW_TTL_S` after the last), not in it: a page that follows the job
live (the web gallery) fetches it when a `progress` event arrives, and streams stay small.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

from PIL import Image as PILImage
from redis.asyncio import Redis

STREAM_TTL_S = 24 * 3600
STREAM_MAXLEN = 100
TERMINAL = frozenset({"result", "failed", "cancelled"})
PREVIEW_TTL_S = 15 * 60
PREVIEW_MAX_SIDE = 256


def stream_key(job_id: str) -> str:
    return f"atelier:events:{job_id}"


async def publish(redis: Redis, job_id: str, event: str, **data: object) -> None:
    """Append one event to the job's stream."""
    key = stream_key(job_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"event": event, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(key, STREAM_TTL_S)
        await pipe.execute()


async def follow(redis: Redis, job_id: str, *, block_ms: int = 1000) -> AsyncIterator[tuple[str, dict]]:
    """Yield `(event, data)` from the start of the job's stream until a terminal event."""
    key, last = stream_key(job_id), "0-0"
    while True:
        batches = await redis.xread({key: last}, block=block_ms, count=100)
        for _stream, entries in batches or ():
            for entry_id, fields in entries:
                last = entry_id
                event = _text(fields[b"event"] if b"event" in fields else fields["event"])
                data = json.loads(fields[b"data"] if b"data" in fields else fields["data"])
                yield event, data
                if event in TERMINAL:
                    return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def latest(redis: Redis, job_id: str, event: str) -> dict | None:
    """The data of the job's most recent `event` still on its stream (None when there is none), e.g. the last
    `training` event's loss for a status message."""
    for _id, fields in await redis.xrevrange(stream_key(job_id), count=STREAM_MAXLEN):
        if _text(fields[b"event"] if b"event" in fields else fields["event"]) == event:
            return json.loads(fields[b"data"] if b"data" in fields else fields["data"])
    return None


def preview_key(job_id: str) -> str:
    return f"atelier:preview:{job_id}"


async def store_preview(redis: Redis, job_id: str, preview: PILImage.Image) -> None:
    """Keep `preview` as the job's latest (a JPEG at most PREVIEW_MAX_SIDE pixels a side)."""
    image = preview.convert("RGB")
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    await redis.set(preview_key(job_id), buffer.getvalue(), ex=PREVIEW_TTL_S)


async def latest_preview(redis: Redis, job_id: str) -> bytes | None:
    """The job's latest preview (JPEG bytes), or None when it has none (not started, or long finished)."""
    return await redis.get(preview_key(job_id))
