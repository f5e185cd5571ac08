"""How long a job will hold the GPU: moving averages of measured GPU seconds, kept in Redis for every process.

Two averages per model, both per image: one for the exact size and step count, and one per megapixel-step that
carries over to sizes and step counts not seen yet. A model never measured gets `DEFAULT_SECONDS_PER_MEGAPIXEL_STEP`
until its first job finishes. Estimates feed admission (the GPU time reserved), fair-share costs and queue ETAs.
"""

from __future__ import annotations

from redis.asyncio import Redis

KEY = "atelier:gpu-seconds"
ALPHA = 0.3  # weight of the newest measurement in the exponential moving average
DEFAULT_SECONDS_PER_MEGAPIXEL_STEP = 0.15  # an SDXL-class model on a consumer GPU: 1024², 30 steps ≈ 5 s
MIN_SECONDS = 0.05

# One round trip, atomic across workers: fold a measurement into both averages.
_RECORD = """
for i = 1, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local new = tonumber(ARGV[i + 2])
  if old then new = tonumber(ARGV[5]) * new + (1 - tonumber(ARGV[5])) * tonumber(old) end
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%.9g', new))
end
return 1
"""


def _fields(model: str, width: int, height: int, steps: int) -> tuple[str, str]:
    return f"exact:{model}:{width}x{height}:{steps}", f"rate:{model}"


def _megapixel_steps(width: int, height: int, steps: int) -> float:
    return width * height * steps / 1e6


async def estimate_seconds(
    redis: Redis, *, model: str, width: int, height: int, steps: int, count: int = 1
) -> float:
    """Expected GPU seconds for `count` images of `model` at this size and step count."""
    exact, rate = await redis.hmget(KEY, list(_fields(model, width, height, steps)))
    if exact is not None:
        per_image = float(exact)
    else:
        per_mps = float(rate) if rate is not None else DEFAULT_SECONDS_PER_MEGAPIXEL_STEP
        per_image = per_mps * _megapixel_steps(width, height, steps)
    return max(MIN_SECONDS, per_image * count)


async def record_seconds(
    redis: Redis, *, model: str, width: int, height: int, steps: int, count: int, seconds: float
) -> None:
    """Fold one finished job's measured GPU seconds into the averages."""
    per_image = seconds / max(1, count)
    per_mps = per_image / max(_megapixel_steps(width, height, steps), 1e-9)
    exact, rate = _fields(model, width, height, steps)
    await redis.eval(_RECORD, 1, KEY, exact, rate, per_image, per_mps, ALPHA)


def spec_shape(spec: dict) -> dict:
    """The estimate's inputs from a stored job spec (kinds without a size or steps count as one 512² step)."""
    return {
        "model": spec.get("model", ""),
        "width": int(spec.get("width", 512)),
        "height": int(spec.get("height", 512)),
        "steps": int(spec.get("steps", 1)),
        "count": int(spec.get("count", 1)),
    }
