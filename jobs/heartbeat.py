"""Worker heartbeats: each worker refreshes a short-lived key in Redis while it runs, so a front-end can tell
whether any worker serves a queue (the CLI starts one of its own when none does; ETAs divide by the count).

Torch-free and light on purpose: front-ends import it on their event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket

from redis.asyncio import Redis

from jobs import metrics

HEARTBEAT_TTL_S = 6
HEARTBEAT_EVERY_S = 2


def heartbeat_key(queue_name: str, worker_id: str) -> str:
    return f"atelier:worker:{queue_name}:{worker_id}"


async def live_workers(redis: Redis, queue_name: str) -> int:
    """How many workers have beaten their heart for `queue_name` in the last few seconds."""
    return len([k async for k in redis.scan_iter(match=heartbeat_key(queue_name, "*"))])


async def beat(redis: Redis, queue_name: str, worker_id: str) -> None:
    """Refresh the worker's key (and the queue-length gauge) until cancelled."""
    key = heartbeat_key(queue_name, worker_id)
    while True:
        await redis.set(key, f"{socket.gethostname()}:{os.getpid()}", ex=HEARTBEAT_TTL_S)
        metrics.QUEUE_LENGTH.labels(queue_name).set(await redis.zcard(queue_name))
        await asyncio.sleep(HEARTBEAT_EVERY_S)
