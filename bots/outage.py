"""What a front-end tells the user when a request fails because a service is down, not because of a bug.

A request that fails unexpectedly is checked against the services it needs: when the database or the queue
does not answer right now, the user is told to try again (nothing was queued or charged: both live there);
otherwise the caller says "something went wrong" with a reference, as before.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from storage import db

CHECK_S = 1.0  # each service gets this long to answer, so the user hears back well inside 3 s


async def outage_message(redis: Redis) -> str | None:
    """The user's message when the database or the queue is down now; None when both answer."""
    if not await db.answers(CHECK_S):
        what = "database"
    elif not await _queue_answers(redis):
        what = "queue"
    else:
        return None
    return (
        f"Atelier can't reach its {what} right now, so nothing was queued or charged. Try again in a minute."
    )


async def _queue_answers(redis: Redis) -> bool:
    try:
        async with asyncio.timeout(CHECK_S):
            await redis.ping()
    except Exception:
        return False
    return True
