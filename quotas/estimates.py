"""How long a job will hold the GPU: moving averages of measured GPU seconds, kept in Redis for every process.

Per model, per image, two things are learned from every finished job:

- the average at the job's exact size and step count (`exact:`), used as it is for that shape;
- a line through all of the model's measurements, seconds = overhead + rate × megapixel-steps (`fit:`: an
  exponentially weighted least-squares fit), which carries over to shapes not seen yet.

The line matters because a job's time is not proportional to its work: loading text encoders, decoding and
moving images cost the same at 64² and at 1024², so a rate learned from small jobs alone, scaled up, would
estimate a large job at many times its real cost (and admission would refuse it as over the monthly budget).
While every measurement has one shape the line's slope is unknown: it is taken as
`DEFAULT_SECONDS_PER_MEGAPIXEL_STEP` through the measured point. A model never measured gets that rate from 0.
Estimates feed admission (the GPU time reserved), fair-share costs and queue ETAs; a job's reservation is
settled to its measured time when it ends, so an estimate only has to be of the right size.
"""

from __future__ import annotations

from redis.asyncio import Redis

KEY = "atelier:gpu-seconds"
ALPHA = 0.3  # weight of the newest measurement in the exponential moving averages
DEFAULT_SECONDS_PER_MEGAPIXEL_STEP = 0.15  # an SDXL-class model on a consumer GPU: 1024², 30 steps ≈ 5 s
MIN_SECONDS = 0.05
SUMS = ("w", "x", "y", "xx", "xy")  # the fit's weighted sums: weight, x, y, x², x·y (x: megapixel-steps)

# One round trip, atomic across workers: fold a measurement into the exact average and the fit's sums.
_RECORD = """
local alpha = tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local y = tonumber(ARGV[5])
local exact = y
if old then exact = alpha * y + (1 - alpha) * tonumber(old) end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.9g', exact))
local x = tonumber(ARGV[4])
local values = {1, x, y, x * x, x * y}
local names = {'w', 'x', 'y', 'xx', 'xy'}
for i = 1, 5 do
  local field = ARGV[2] .. ':' .. names[i]
  local sum = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  redis.call('HSET', KEYS[1], field, string.format('%.12g', (1 - alpha) * sum + alpha * values[i]))
end
return 1
"""


def _fields(model: str, width: int, height: int, steps: int) -> tuple[str, str]:
    return f"exact:{model}:{width}x{height}:{steps}", f"fit:{model}"


def _megapixel_steps(width: int, height: int, steps: int) -> float:
    return width * height * steps / 1e6


def per_image_from_fit(sums: dict[str, float] | None, x: float) -> float:
    """Seconds per image at `x` megapixel-steps from the fit's weighted sums (None: nothing measured yet)."""
    if sums is None or sums["w"] <= 0:
        return DEFAULT_SECONDS_PER_MEGAPIXEL_STEP * x
    mean_x, mean_y = sums["x"] / sums["w"], sums["y"] / sums["w"]
    variance = sums["xx"] / sums["w"] - mean_x**2
    if variance <= (1e-3 * max(mean_x, 1e-6)) ** 2:  # one shape so far: the slope is not measured yet
        slope = DEFAULT_SECONDS_PER_MEGAPIXEL_STEP
    else:
        slope = max(0.0, (sums["xy"] / sums["w"] - mean_x * mean_y) / variance)
    overhead = mean_y - slope * mean_x
    if overhead < 0:  # noise (or the default slope) would make small jobs free: proportional instead
        return mean_y / max(mean_x, 1e-9) * x
    return overhead + slope * x


async def estimate_seconds(
    redis: Redis, *, model: str, width: int, height: int, steps: int, count: int = 1
) -> float:
    """Expected GPU seconds for `count` images of `model` at this size and step count."""
    exact, fit = _fields(model, width, height, steps)
    values = await redis.hmget(KEY, [exact, *(f"{fit}:{name}" for name in SUMS)])
    if values[0] is not None:
        per_image = float(values[0])
    else:
        sums = (
            None if values[1] is None else {n: float(v or 0) for n, v in zip(SUMS, values[1:], strict=True)}
        )
        per_image = per_image_from_fit(sums, _megapixel_steps(width, height, steps))
    return max(MIN_SECONDS, per_image * count)


async def record_seconds(
    redis: Redis, *, model: str, width: int, height: int, steps: int, count: int, seconds: float
) -> None:
    """Fold one finished job's measured GPU seconds into the averages."""
    per_image = seconds / max(1, count)
    exact, fit = _fields(model, width, height, steps)
    x = _megapixel_steps(width, height, steps)
    await redis.eval(_RECORD, 1, KEY, exact, fit, ALPHA, x, per_image)


def spec_shape(spec: dict) -> dict:
    """The estimate's inputs from a stored job spec (kinds without a size or steps count as one 512² step)."""
    return {
        "model": spec.get("model", ""),
        "width": int(spec.get("width", 512)),
        "height": int(spec.get("height", 512)),
        "steps": int(spec.get("steps", 1)),
        "count": int(spec.get("count", 1)),
    }
