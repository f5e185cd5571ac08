"""Middleware that drops Events API redeliveries: Slack resends an event it thinks was not acknowledged in time
(up to three retries, the same `event_id` each time), and bolt would run the listeners again for each one.

The first delivery claims the event id with a Redis `SET NX` that expires after a day; a later delivery finds
the claim and is answered 200 without reaching a listener, so Slack stops retrying and nothing runs twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from slack_bolt.response import BoltResponse

DEDUPE_TTL_S = 24 * 3600
KEY_PREFIX = "atelier:slack:event:"

log = logging.getLogger(__name__)


def event_deduplicator(
    redis: Redis, *, ttl_s: int = DEDUPE_TTL_S
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """A bolt global middleware that lets each `event_id` through once."""

    async def deduplicate_events(body: dict, next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id is None:
            await next()
            return None
        if await redis.set(KEY_PREFIX + str(event_id), "1", nx=True, ex=ttl_s):
            await next()
            return None
        log.info("slack event %s redelivered: already handled, dropped", event_id)
        return BoltResponse(status=200, body="")

    return deduplicate_events
