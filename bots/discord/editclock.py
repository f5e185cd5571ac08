"""Space out edits of one Discord message, across processes: the bot and every worker share the clock.

Discord allows about one edit per second per message. The bot writes a job's first status, a worker its
progress, the bot again on Cancel: each takes the message's turn in Redis first. Taking a turn is three steps:
reserve the next slot (`interval` after the last one reserved: turns come in the order they were asked for),
then take the message's lock (one edit at a time, whoever makes it), then wait until `interval` after the
previous edit *finished*, however long that one took on the wire (a slow Discord, a 429 waited out and retried
inside it). So two edits of a message that Discord accepts are always at least `interval` apart, in the order
they were asked for. The holder renews its lock every `RENEW_S` while its edit lasts (a 429 waited out can take
many seconds), so a lock left by a crashed process frees itself within `LOCK_TTL_MS`: a worker killed mid-edit
held the message for a minute, and the job's retry waited that long to say anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

EDIT_INTERVAL_S = 1.1  # Discord's observed limit is 1/s; a tenth of margin absorbs clock skew between hosts.
KEY_PREFIX = "atelier:discord:edit-slot:"
KEY_TTL_S = 3600
LOCK_TTL_MS = 6_000  # only a crashed holder ever reaches it: a live one renews it every RENEW_S
RENEW_S = 2.0
POLL_S = 0.05  # how often a waiting editor looks whether the message's turn is free

_RESERVE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tonumber(ARGV[1]), last + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.3f', slot), 'EX', tonumber(ARGV[3]))
return string.format('%.3f', slot)
"""

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return redis.call('GET', KEYS[2]) or '0'
end
return false
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

_RELEASE = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > last then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"""


class EditClock:
    def __init__(self, redis: Redis, interval: float = EDIT_INTERVAL_S) -> None:
        self.redis, self.interval = redis, interval
        self._renewals: dict[str, asyncio.Task] = {}  # token -> the task keeping its lock alive

    async def acquire(self, message_id: int, *, not_before: float = 0.0) -> str:
        """Wait for `message_id`'s turn: its slot (no earlier than `not_before`, a UNIX time), no other edit of it
        in flight, and `interval` since the last one finished. Returns the token to `release` it with."""
        token = secrets.token_hex(8)
        lock, done = _keys(message_id)
        slots = f"{KEY_PREFIX}{message_id}:slot"
        try:
            now = max(time.time(), not_before)
            slot = float(await self.redis.eval(_RESERVE, 1, slots, now, self.interval, KEY_TTL_S))
            await asyncio.sleep(max(0.0, slot - time.time()))
            while True:
                last = await self.redis.eval(_ACQUIRE, 2, lock, done, token, LOCK_TTL_MS)
                if last is not None:
                    self._renewals[token] = asyncio.create_task(self._renew(lock, token))
                    break
                await asyncio.sleep(POLL_S)  # another edit of this message is in flight
            start = max(float(last) + self.interval, not_before)
            await asyncio.sleep(max(0.0, start - time.time()))
        except BaseException:
            # Cancelled while waiting, perhaps with the lock just taken in Redis: give the turn to the next
            # editor (the release only frees a lock that holds this token).
            await self.release(message_id, token, edited=False)
            raise
        return token

    async def release(self, message_id: int, token: str, *, edited: bool = True) -> None:
        """End the turn; with `edited`, the next one starts `interval` from now."""
        renewal = self._renewals.pop(token, None)
        if renewal is not None:
            renewal.cancel()
        lock, done = _keys(message_id)
        now = f"{time.time():.3f}" if edited else "0"
        await self.redis.eval(_RELEASE, 2, lock, done, token, now, KEY_TTL_S)

    async def _renew(self, lock: str, token: str) -> None:
        """Keep `token`'s lock alive until it is released (or taken over, after a pause longer than the TTL)."""
        while True:
            await asyncio.sleep(RENEW_S)
            with contextlib.suppress(RedisError):
                if not await self.redis.eval(_RENEW, 1, lock, token, LOCK_TTL_MS):
                    return

    @contextlib.asynccontextmanager
    async def turn(self, message_id: int, *, not_before: float = 0.0) -> AsyncIterator[None]:
        """Wait for this message's turn, run the edit in the block, then end the turn."""
        token = await self.acquire(message_id, not_before=not_before)
        try:
            yield
        finally:
            await self.release(message_id, token)


def _keys(message_id: int) -> tuple[str, str]:
    return f"{KEY_PREFIX}{message_id}:lock", f"{KEY_PREFIX}{message_id}"
