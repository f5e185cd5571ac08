"""Rate limits: a token bucket per API key and one per client address, in Redis, taken atomically by one Lua
script so that every `atelier api` process behind a load balancer shares them.

Each bucket holds at most `burst` tokens and refills at `rate` tokens a second (Redis's clock, so processes on
different machines agree). A request takes one token from each of its buckets, or from none when either is
empty: it is then refused with 429 and `Retry-After` (whole seconds until the emptier bucket has a token).

Every answer carries the headers of draft-ietf-httpapi-ratelimit-headers-07 for the tighter of the two buckets:
`RateLimit-Limit` (its burst), `RateLimit-Remaining` (whole tokens left), `RateLimit-Reset` (seconds until it is
full again) and `RateLimit-Policy: <burst>;w=<seconds to refill from empty>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS: the buckets. ARGV: per bucket, rate (tokens per second) then burst.
# Returns {allowed, index of the tightest bucket (1-based), its tokens left x1000, retry-after ms, reset ms}.
TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local tokens, allowed, retry = {}, 1, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]) / 1000, tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local t, ts = tonumber(state[1]), tonumber(state[2])
  if t == nil or ts == nil then t, ts = burst, now end
  t = math.min(burst, t + math.max(0, now - ts) * rate)
  tokens[i] = t
  if t < 1 then
    allowed = 0
    retry = math.max(retry, math.ceil((1 - t) / rate))
  end
end
local tightest, least, reset = 1, nil, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]) / 1000, tonumber(ARGV[2 * i])
  local t = tokens[i]
  if allowed == 1 then t = t - 1 end
  redis.call('HSET', KEYS[i], 't', tostring(t), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
  if least == nil or t < least then
    tightest, least, reset = i, t, math.ceil((burst - t) / rate)
  end
end
return {allowed, tightest, math.floor(least * 1000), retry, reset}
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: float  # tokens per second
    burst: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    window_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def bucket_key(scope: str, ident: str) -> str:
    return f"atelier:api:ratelimit:{scope}:{ident}"


async def take(redis: Redis, buckets: list[Bucket]) -> Verdict:
    """Take one token from every bucket, or none when any is empty (see the module's docstring)."""
    args: list[float | int] = []
    for bucket in buckets:
        args += [bucket.rate, bucket.burst]
    allowed, tightest, least_milli, retry_ms, reset_ms = await redis.eval(
        TAKE, len(buckets), *(b.key for b in buckets), *args
    )
    bucket = buckets[int(tightest) - 1]
    return Verdict(
        allowed=bool(allowed),
        limit=bucket.burst,
        remaining=max(0, math.floor(int(least_milli) / 1000)),
        reset_s=math.ceil(int(reset_ms) / 1000),
        window_s=math.ceil(bucket.burst / bucket.rate),
        retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)),
    )
