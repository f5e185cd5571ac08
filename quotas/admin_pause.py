"""Pausing a tenant: new requests are refused and its queued jobs are held, keeping their fair place, until
it is resumed. A pause holds the tenant's jobs in every queue it has (images, LoRA training)."""

from __future__ import annotations

from collections.abc import Sequence

from arq.constants import job_key_prefix
from redis.asyncio import Redis

from quotas.admin_tiers import TenantRef
from quotas.policy import quota_row, tenant_for
from quotas.tiers import Tiers
from storage.models import Job, JobStatus

JOB_EXPIRES_S = 24 * 3600
"""How long a queued job may wait before arq drops it (jobs.queue passes it to arq when enqueueing; a held job
gets it afresh when released)."""

# Moves a tenant's queued job out of the queue into its held set, keeping its score (its fair place).
_HOLD = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZADD', KEYS[2], score, ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('PERSIST', KEYS[3])
return 1
"""
# Puts every held job back in the queue with the score it had, its arq record given a fresh expiry (ARGV[2] ms;
# held, it never expires: a pause may last any time). ARGV[1] is arq's job key prefix.
_RELEASE = """
local held = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #held, 2 do
  redis.call('ZADD', KEYS[1], held[i + 1], held[i])
  redis.call('PEXPIRE', ARGV[1] .. held[i], ARGV[2])
end
redis.call('DEL', KEYS[2])
return #held / 2
"""


def held_key(queue_name: str, tenant_id: int) -> str:
    """Where a paused tenant's queued jobs wait, with their scores, until it is resumed."""
    return f"atelier:held:{queue_name}:{tenant_id}"


class PauseAdmin:
    """Pauses and resumes tenants over the arq `queues` on `redis`."""

    def __init__(self, redis: Redis, queues: Sequence[str], tiers: Tiers) -> None:
        self.redis, self.queues, self.tiers = redis, list(queues), tiers

    async def pause(self, tenant: TenantRef) -> int:
        """Stop the tenant's queue: new requests are refused and its queued jobs are held (keeping their place)
        until `resume`; a running job finishes. Returns how many queued jobs were held."""
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.paused = True
        await row.save(update_fields=["paused", "updated_at"])
        held = 0
        for job_id in await Job.filter(tenant_id=t.id, status=JobStatus.QUEUED).values_list("id", flat=True):
            for queue in self.queues:
                keys = (queue, held_key(queue, t.id), job_key_prefix + job_id)
                held += await self.redis.eval(_HOLD, 3, *keys, job_id)
        return held

    async def resume(self, tenant: TenantRef) -> int:
        """Accept the tenant's requests again and put its held jobs back in the queue where they were.
        Returns how many jobs were released."""
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.paused = False
        await row.save(update_fields=["paused", "updated_at"])
        released = 0
        for queue in self.queues:
            keys = (queue, held_key(queue, t.id))
            released += int(await self.redis.eval(_RELEASE, 2, *keys, job_key_prefix, JOB_EXPIRES_S * 1000))
        return released
