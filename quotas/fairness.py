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
The relax lane (`jobs.relax`) is a second band of the same arq queue: a relax job's score is `RELAX_BASE` plus
its tag in the relax lane's own fair clock (its own state key, its head sought within the band), so the relax
lane is fair between tenants by the same rule, and arq, taking the lowest score first, starts every waiting fast
job (any tag below `CEILING_MS`) before any relax job. Relax scores stay in the past too: `RELAX_BASE` is 1e12 ms
(September 2001) and a relax tag has room for about 24 years of weighted GPU time before it reaches today.

A job keeps its tag for good: the tag is stored per job, so enqueueing it again (a redelivered request, a crash
between the database and Redis) gives the same score, and a job retried after its worker died keeps its score in
the queue, i.e. its place.
"""

from __future__ import annotations

from redis.asyncio import Redis

CEILING_MS = 10**12
RELAX_BASE = CEILING_MS  # relax scores: RELAX_BASE + tag; fast scores (tags) are all below it
TAG_TTL_MS = 3 * 24 * 3600 * 1000  # longer than any job may wait (arq's expiry) plus its retries

_TAG = """
local existing = redis.call('GET', KEYS[3])
if existing then return existing end
local base = tonumber(ARGV[6])
local head = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[6], '(' .. (base + tonumber(ARGV[4])), 'WITHSCORES', 'LIMIT', 0, 1)
local v
if head[2] then v = tonumber(head[2]) - base else v = tonumber(redis.call('HGET', KEYS[2], 'vmax') or '0') end
local field = 'tenant:' .. ARGV[1]
local start = math.max(v, tonumber(redis.call('HGET', KEYS[2], field) or '0'))
local finish = start + math.max(1, math.floor(tonumber(ARGV[2]) / tonumber(ARGV[3]) + 0.5))
local text = string.format('%d', finish)
redis.call('HSET', KEYS[2], field, text)
if finish > tonumber(redis.call('HGET', KEYS[2], 'vmax') or '0') then redis.call('HSET', KEYS[2], 'vmax', text) end
redis.call('SET', KEYS[3], text, 'PX', ARGV[5])
return text
"""


def state_key(queue_name: str, lane: str = "fast") -> str:
    return f"atelier:fair:{queue_name}" if lane == "fast" else f"atelier:fair:{queue_name}:{lane}"


def lane_base(lane: str) -> int:
    """Where a lane's scores start: 0 for the fast lane, `RELAX_BASE` for the relax lane."""
    if lane not in ("fast", "relax"):
        raise ValueError(f"unknown lane {lane!r}: fast or relax")
    return 0 if lane == "fast" else RELAX_BASE


def tag_key(job_id: str) -> str:
    return f"atelier:fair:tag:{job_id}"


async def fair_tag(
    redis: Redis,
    *,
    queue_name: str,
    job_id: str,
    tenant_key: str,
    cost_ms: int,
    weight: float,
    lane: str = "fast",
) -> int:
    """The job's arq score in its lane: its virtual finish tag (plus the lane's base), assigned once,
    atomically, then always the same."""
    if weight <= 0:
        raise ValueError(f"a tier's weight must be positive (got {weight})")
    base = lane_base(lane)
    text = await redis.eval(
        _TAG,
        3,
        queue_name,
        state_key(queue_name, lane),
        tag_key(job_id),
        tenant_key,
        max(1, int(cost_ms)),
        float(weight),
        CEILING_MS,
        TAG_TTL_MS,
        base,
    )
    return int(text) + base


async def virtual_time(redis: Redis, queue_name: str, lane: str = "fast") -> int:
    """A lane's virtual time now: the lowest fair tag in the queue, else the highest ever given (0 at first)."""
    base = lane_base(lane)
    head = await redis.zrangebyscore(
        queue_name, base, f"({base + CEILING_MS}", start=0, num=1, withscores=True
    )
    if head:
        return int(head[0][1]) - base
    return int(await redis.hget(state_key(queue_name, lane), "vmax") or 0)
