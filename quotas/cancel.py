"""The cancel signal for a running job: a flag key that outlives a worker crash, and a pub/sub message that
reaches the worker at once.

`request_cancel` sets both. The worker running the job holds a `CancelWatch`: it subscribes before it checks the
flag (so no request falls between the two), and turns either into a `threading.Event` that the GPU thread checks
after every denoising step, which is how a running job stops within one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

FLAG_TTL_S = 3 * 24 * 3600  # as long as a job may still be retried
RESUBSCRIBE_S = 1.0  # how often a watch that lost Redis tries to subscribe again


def cancel_key(job_id: str) -> str:
    """Both the flag key and the pub/sub channel of job `job_id`'s cancel signal."""
    return f"atelier:cancel:{job_id}"


async def request_cancel(redis: Redis, job_id: str, by: str) -> None:
    """Ask whichever worker runs (or will run) job `job_id` to stop it; `by` says who asked, for the record."""
    key = cancel_key(job_id)
    await redis.set(key, by, ex=FLAG_TTL_S)
    await redis.publish(key, by)


async def cancel_requested(redis: Redis, job_id: str) -> bool:
    return bool(await redis.exists(cancel_key(job_id)))


class CancelWatch:
    """While open, sets `event` as soon as a cancel of `job_id` is requested (or if one already was). A lost
    connection to Redis (a restart) neither ends the watch nor fails the job: it subscribes again, and checks the
    flag again so a cancel requested meanwhile is not missed."""

    def __init__(self, redis: Redis, job_id: str) -> None:
        self._redis, self._key = redis, cancel_key(job_id)
        self.event = threading.Event()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> CancelWatch:
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._key)
        if await self._redis.exists(self._key):
            self.event.set()
        else:
            self._task = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        while True:
            try:
                if self._pubsub is None:  # the connection was lost: subscribe again, then look at the flag
                    self._pubsub = self._redis.pubsub()
                    await self._pubsub.subscribe(self._key)
                    if await self._redis.exists(self._key):
                        self.event.set()
                        return
                async for message in self._pubsub.listen():
                    if message["type"] == "message":
                        self.event.set()
                        return
            except (RedisError, OSError):
                await self._close()
                await asyncio.sleep(RESUBSCRIBE_S)

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._key)
        await self._close()
