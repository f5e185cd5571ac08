"""Weighted fair queuing across tenants, expressed as the arq score (arq runs the lowest score first).

Self-clocked fair queuing: each job gets a virtual finish tag, `start + cost / weight`, where `start` is the
later of the tenant's previous finish tag and the system's virtual time (the lowest tag still in the queue, or,
when the queue is empty, the highest tag ever given). A tenant with a batch of 100 advances its own virtual time
100 times while a newcomer starts from the system's, so the newcomer's jobs interleave with the batch instead of
waiting behind it; a tier of weight 4 advances a quarter as fast, so it gets four turns to one without starving
anyone. Costs are estimated GPU milliseconds.

Tags are virtual milliseconds counted from 0, so as arq scores they read as instants in early 1970: always in the
past (runnable at once, whatever the clock says), below every real-time score arq gives a job enqueued without
one, and far from running out (`CEILING_MS` is about 31 years of weighted GPU time). Because the score is in the
past, arq's default expiry (computed from the score) would be negative: `enqueue` passes `_expires` explicitly.
A job keeps its tag for good: the tag is stored per job, so enqueueing it again (a redelivered request, a crash
between the database and Redis) gives the same score, and a job retried after its worker died keeps its score in
the queue, i.e. its place.
"""

from __future__ import annotations

from redis.asyncio import Redis

CEILING_MS = 10**12
TAG_TTL_MS = 3 * 24 * 3600 * 1000  # longer than any job may wait (arq's expiry) plus its retries

_TAG = """
local existing = redis.call('GET', KEYS[3])
if existing then return existing end
local head = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4], 'WITHSCORES', 'LIMIT', 0, 1)
local v
if head[2] then v = tonumber(head[2]) else v = tonumber(redis.call('HGET', KEYS[2], 'vmax') or '0') end
local field = 'tenant:' .. ARGV[1]
local start = math.max(v, tonumber(redis.call('HGET', KEYS[2], field) or '0'))
local finish = start + math.max(1, math.floor(tonumber(ARGV[2]) / tonumber(ARGV[3]) + 0.5))
local text = string.format('%d', finish)
redis.call('HSET', KEYS[2], field, text)
if finish > tonumber(redis.call('HGET', KEYS[2], 'vmax') or '0') then redis.call('HSET', KEYS[2], 'vmax', text) end
redis.call('SET', KEYS[3], text, 'PX', ARGV[5])
return text
"""


def state_key(queue_name: str) -> str:
    return f"atelier:fair:{queue_name}"


def tag_key(job_id: str) -> str:
    return f"atelier:fair:tag:{job_id}"


async def fair_tag(
    redis: Redis, *, queue_name: str, job_id: str, tenant_key: str, cost_ms: int, weight: float
) -> int:
    """The job's virtual finish tag (its arq score): assigned once, atomically, then always the same."""
    if weight <= 0:
        raise ValueError(f"a tier's weight must be positive (got {weight})")
    text = await redis.eval(
        _TAG,
        3,
        queue_name,
        state_key(queue_name),
        tag_key(job_id),
        tenant_key,
        max(1, int(cost_ms)),
        float(weight),
        CEILING_MS,
        TAG_TTL_MS,
    )
    return int(text)


async def virtual_time(redis: Redis, queue_name: str) -> int:
    """The system's virtual time now: the lowest fair tag in the queue, else the highest ever given (0 at first)."""
    head = await redis.zrangebyscore(queue_name, "-inf", f"({CEILING_MS}", start=0, num=1, withscores=True)
    if head:
        return int(head[0][1])
    return int(await redis.hget(state_key(queue_name), "vmax") or 0)
