"""The per-message edit clock shared by the bot and the workers, on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import time

from redis.asyncio import Redis

from bots.discord.editclock import EditClock

REDIS_URL = "redis://127.0.0.1:6379/5"


async def test_two_processes_editing_one_message_get_slots_an_interval_apart() -> None:
    bot, worker = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)  # two clients, as two processes have
    try:
        message = time.time_ns()
        clocks = [EditClock(bot, interval=0.3), EditClock(worker, interval=0.3)]
        slots = await asyncio.gather(*(clocks[i % 2].reserve(message) for i in range(6)))
        ordered = sorted(slots)
        assert all(b - a >= 0.3 - 1e-3 for a, b in itertools.pairwise(ordered))
        other = await clocks[0].reserve(message + 1)  # another message is not held up
        assert other - time.time() < 0.1
    finally:
        await bot.aclose()
        await worker.aclose()


async def test_the_next_turn_counts_from_when_the_last_edit_finished() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        clock, message = EditClock(redis, interval=0.2), time.time_ns()
        async with clock.turn(message):
            await asyncio.sleep(0.3)  # a slow request
        finished = time.time()
        async with clock.turn(message):
            started = time.time()
        assert started - finished >= 0.2 - 1e-3
    finally:
        await redis.aclose()
