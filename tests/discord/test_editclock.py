"""The per-message edit clock shared by the bot and the workers, on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time

from redis.asyncio import Redis

from bots.discord.editclock import LOCK_TTL_MS, EditClock
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


async def test_the_lock_of_a_process_killed_mid_edit_frees_itself_and_a_live_holder_keeps_it() -> None:
    """A worker SIGKILLed while it edits a message leaves the message's lock behind: it lapses within
    LOCK_TTL_MS, while a live holder whose edit outlasts the TTL (a long 429) keeps renewing it."""
    message = time.time_ns()
    holder = f"""
import asyncio, os, signal
from redis.asyncio import Redis
from bots.discord.editclock import EditClock
async def main():
    await EditClock(Redis.from_url({REDIS_URL!r})).acquire({message})
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""
    killed = await asyncio.create_subprocess_exec(sys.executable, "-c", holder)
    assert await killed.wait() == -signal.SIGKILL
    redis = Redis.from_url(REDIS_URL)
    try:
        clock = EditClock(redis, interval=0.01)
        started = time.monotonic()
        token = await asyncio.wait_for(clock.acquire(message), timeout=LOCK_TTL_MS / 1000 + 20)
        print(f"\nthe dead holder's lock lapsed after {time.monotonic() - started:.1f} s")
        # This live holder outlasts the TTL; another editor keeps waiting until it releases.
        other = EditClock(redis, interval=0.01)
        waiting = asyncio.create_task(other.acquire(message))
        done, _ = await asyncio.wait([waiting], timeout=LOCK_TTL_MS / 1000 * 1.5)
        assert not done, "the live holder's lock lapsed"
        await clock.release(message, token)
        await other.release(message, await asyncio.wait_for(waiting, timeout=10))
    finally:
        await redis.aclose()
