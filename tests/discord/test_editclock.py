"""The per-message edit clock shared by the bot and the workers, on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import time

from redis.asyncio import Redis

from bots.discord.editclock import EditClock
from tests.support import redis_url

REDIS_URL = redis_url(5)


async def test_two_processes_editing_one_message_take_turns_an_interval_apart() -> None:
    bot, worker = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)  # two clients, as two processes have
    try:
        message = time.time_ns()
        clocks = [EditClock(bot, interval=0.2), EditClock(worker, interval=0.2)]
        spans: list[tuple[float, float]] = []

        async def edit(clock: EditClock, seconds: float) -> None:
            async with clock.turn(message):
                started = time.time()
                await asyncio.sleep(seconds)  # the request on the wire, some slow (a 429 retried inside)
                spans.append((started, time.time()))

        await asyncio.gather(*(edit(clocks[i % 2], 0.3 if i % 3 == 0 else 0.01) for i in range(6)))
        spans.sort()
        # Never two at once, and each starts an interval after the previous one finished.
        assert all(b[0] - a[1] >= 0.2 - 1e-3 for a, b in itertools.pairwise(spans)), spans
        before = time.time()
        async with clocks[0].turn(message + 1):  # another message is not held up
            assert time.time() - before < 0.1
    finally:
        await bot.aclose()
        await worker.aclose()


async def test_the_next_turn_counts_from_when_the_last_edit_finished() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        clock, message = EditClock(redis, interval=0.2), time.time_ns()
        async with clock.turn(message):
            await asyncio.sleep(0.3)  # a slow request
            finished = time.time()  # its answer came
        async with clock.turn(message):
            started = time.time()
        assert started - finished >= 0.2 - 1e-3
    finally:
        await redis.aclose()


async def test_an_editor_cancelled_while_waiting_leaves_the_turn_to_the_next() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        clock, message = EditClock(redis, interval=0.2), time.time_ns()

        async def slow_edit() -> None:
            async with clock.turn(message):
                await asyncio.sleep(0.5)

        holder = asyncio.create_task(slow_edit())
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(clock.acquire(message))  # waits for the slow edit's lock
        await asyncio.sleep(0.3)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await holder
        finished = time.time()
        async with clock.turn(message):
            # An interval after the slow edit, not held up by the cancelled one (nor by a lock it left).
            assert 0.2 - 1e-2 <= time.time() - finished < 0.5
    finally:
        await redis.aclose()
