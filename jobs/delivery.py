"""What a platform replier has already posted for a job, part by part, so that a delivery that is tried again
(after a failed post, or by another worker after a crash) posts only what is missing.

A part is whatever one platform call posts: a Discord message of up to ten files, a Slack upload, the buttons
message. The replier marks a part right after the platform accepted it. A crash between the two leaves the part
unmarked; where the platform can recognise a repeat (Discord's message `nonce`), the repeat is absorbed there.

A part that can never be posted (the asker cannot be reached: Discord private mode with the interaction token
expired and direct messages closed) is marked failed with its reason (`mark_failed`), so a delivery tried again
does not knock on the same closed door, and an admin can read why (`HGETALL atelier:posted:<job id>`).
"""

from __future__ import annotations

from redis.asyncio import Redis

POSTED_TTL_S = 30 * 24 * 3600  # longer than any retry of a job can come
FAILED_PREFIX = "failed: "


def posted_key(job_id: str) -> str:
    return f"atelier:posted:{job_id}"


class PostedParts:
    """The parts of one job's delivery that one platform already accepted."""

    def __init__(self, redis: Redis, job_id: str, platform: str) -> None:
        self._redis, self._key, self._platform = redis, posted_key(job_id), platform

    async def get(self, part: str) -> str | None:
        """What `mark` recorded for `part`, or None when it was not posted yet."""
        value = await self._redis.hget(self._key, f"{self._platform}:{part}")
        return value.decode() if isinstance(value, bytes) else value

    async def mark(self, part: str, reference: str = "") -> None:
        """Record that `part` was posted (`reference`: what the replier needs to know of it later)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, f"{self._platform}:{part}", reference or "1")
            pipe.expire(self._key, POSTED_TTL_S)
            await pipe.execute()

    async def mark_failed(self, part: str, reason: str) -> None:
        """Record that `part` cannot be posted, and why; `get` then answers `failed: <reason>`."""
        await self.mark(part, FAILED_PREFIX + reason)


def failed_reason(recorded: str | None) -> str | None:
    """The reason recorded by `mark_failed`, or None for a part posted, being tried or never tried."""
    if recorded is None or not recorded.startswith(FAILED_PREFIX):
        return None
    return recorded.removeprefix(FAILED_PREFIX)
