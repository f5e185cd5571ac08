"""Worker heartbeats: each worker refreshes a short-lived key in Redis while it runs, so a front-end can tell
whether any worker serves a queue (the CLI starts one of its own when none does; ETAs divide by the count).
The key's value is the worker's advert (jobs.routing.advert: the models it may serve, those resident, its LoRAs,
GPU memory free), which the other workers read to route jobs by model.

Torch-free and light on purpose: front-ends import it on their event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs import metrics

log = logging.getLogger(__name__)

HEARTBEAT_TTL_S = 6
HEARTBEAT_EVERY_S = 2


def heartbeat_key(queue_name: str, worker_id: str) -> str:
    return f"atelier:worker:{queue_name}:{worker_id}"


def workers_key(queue_name: str) -> str:
    """A set of the ids of the workers that have beaten for `queue_name` (stale ones are removed by readers), so a
    worker reads its peers' heartbeats without scanning the keyspace (jobs.routing)."""
    return f"atelier:workers:{queue_name}"


async def live_workers(redis: Redis, queue_name: str) -> int:
    """How many workers have beaten their heart for `queue_name` in the last few seconds."""
    return len([k async for k in redis.scan_iter(match=heartbeat_key(queue_name, "*"))])


async def beat(
    redis: Redis,
    queue_name: str,
    worker_id: str,
    advert: Callable[[], str] | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Refresh the worker's key (and the queue-length gauge) until cancelled, every `HEARTBEAT_EVERY_S` or as
    soon as `wake` is set (what the worker holds changed). Its value is `advert()` ("host:pid" without one). A
    Redis error (a restart, a network blip) is logged once per outage and the beat goes on: the worker is alive,
    and says so again as soon as Redis answers."""
    key = heartbeat_key(queue_name, worker_id)
    failing = False
    while True:
        try:
            value = advert() if advert is not None else f"{socket.gethostname()}:{os.getpid()}"
            async with redis.pipeline(transaction=False) as pipe:
                pipe.set(key, value, ex=HEARTBEAT_TTL_S)
                pipe.sadd(workers_key(queue_name), worker_id)
                await pipe.execute()
            metrics.QUEUE_LENGTH.labels(queue_name).set(await redis.zcard(queue_name))
            if failing:
                log.info("heartbeat: Redis answers again")
            failing = False
        except (RedisError, OSError) as exc:
            if not failing:
                log.warning(
                    "heartbeat: Redis does not answer (%s); retrying every %d s", exc, HEARTBEAT_EVERY_S
                )
            failing = True
        if wake is None:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
        else:
            try:
                await asyncio.wait_for(wake.wait(), HEARTBEAT_EVERY_S)
            except TimeoutError:
                pass
            wake.clear()
