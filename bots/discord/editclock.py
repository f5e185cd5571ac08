"""Space out edits of one Discord message, across processes: the bot and every worker share the clock.

Discord allows about one edit per second per message. The bot writes a job's first status, a worker its
progress, the bot again on Cancel: each first reserves the next free slot for that message in Redis (one
atomic script: `max(now, last + interval)`), sleeps until it, edits, and then moves `last` to the moment the
edit finished. So the next edit starts at least `interval` after the previous one was answered, whoever makes
them, however long a request took on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

EDIT_INTERVAL_S = 1.1  # Discord's observed limit is 1/s; a tenth of margin absorbs clock skew between hosts.
KEY_PREFIX = "atelier:discord:edit-slot:"
KEY_TTL_S = 3600

_RESERVE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tonumber(ARGV[1]), last + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.3f', slot), 'EX', tonumber(ARGV[3]))
return string.format('%.3f', slot)
"""

_FINISHED = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > last then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
return 1
"""


class EditClock:
    def __init__(self, redis: Redis, interval: float = EDIT_INTERVAL_S) -> None:
        self.redis, self.interval = redis, interval

    async def reserve(self, message_id: int, *, not_before: float = 0.0) -> float:
        """Reserve the next edit slot of `message_id` (a UNIX time no earlier than `not_before`)."""
        now = max(time.time(), not_before)
        slot = await self.redis.eval(_RESERVE, 1, _key(message_id), now, self.interval, KEY_TTL_S)
        return float(slot)

    async def finished(self, message_id: int) -> None:
        """Record that an edit of `message_id` was just answered: the next slot counts from now."""
        await self.redis.eval(_FINISHED, 1, _key(message_id), f"{time.time():.3f}", KEY_TTL_S)

    @contextlib.asynccontextmanager
    async def turn(self, message_id: int, *, not_before: float = 0.0) -> AsyncIterator[None]:
        """Wait for this message's next slot, run the edit in the block, then mark it finished."""
        delay = await self.reserve(message_id, not_before=not_before) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            yield
        finally:
            await self.finished(message_id)


def _key(message_id: int) -> str:
    return f"{KEY_PREFIX}{message_id}"
