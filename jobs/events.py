"""Job events in a Redis stream per job: what happened to a job, readable by anyone who follows it.

Workers append `queued`, `started`, `progress`, `result` and `failed` events; the CLI follows a job's stream to
draw its progress bar, and later front-ends can read it too. A stream (not pub/sub) lets a follower that arrives
late still read from the beginning. Progress events are trimmed to the latest few; streams expire after a day.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from redis.asyncio import Redis

STREAM_TTL_S = 24 * 3600
STREAM_MAXLEN = 100
TERMINAL = frozenset({"result", "failed", "cancelled"})


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
