"""GPU-time estimates on real Redis: exact shapes as measured, other shapes from a fitted overhead + rate."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from quotas.estimates import DEFAULT_SECONDS_PER_MEGAPIXEL_STEP, MIN_SECONDS, estimate_seconds, record_seconds


@pytest.fixture
async def redis(redis_url: str):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def seconds(overhead: float, rate: float, width: int, height: int, steps: int) -> float:
    return overhead + rate * width * height * steps / 1e6


async def test_an_unmeasured_model_gets_the_default_rate(redis: Redis) -> None:
    estimate = await estimate_seconds(redis, model="m", width=1024, height=1024, steps=30, count=2)
    assert estimate == pytest.approx(2 * DEFAULT_SECONDS_PER_MEGAPIXEL_STEP * 1024 * 1024 * 30 / 1e6)
    assert await estimate_seconds(redis, model="m", width=64, height=64, steps=1) == MIN_SECONDS


async def test_small_jobs_overhead_is_not_scaled_up_to_large_jobs(redis: Redis) -> None:
    # Tiny-model-like timings: half a second of overhead per image, almost nothing per pixel.
    overhead, rate = 0.5, 0.02
    await record_seconds(
        redis,
        model="m",
        width=64,
        height=64,
        steps=4,
        count=2,
        seconds=2 * seconds(overhead, rate, 64, 64, 4),
    )
    one_shape = await estimate_seconds(redis, model="m", width=512, height=512, steps=50, count=4)
    # The old proportional estimate (0.5 s per 0.016 megapixel-steps) was about 31 s/mps: 1,600 s for this job.
    assert one_shape < 4 * (overhead + DEFAULT_SECONDS_PER_MEGAPIXEL_STEP * 13.2)

    for width, steps in ((128, 10), (256, 20), (64, 4)):
        await record_seconds(
            redis, model="m", width=width, height=width, steps=steps, count=1,
            seconds=seconds(overhead, rate, width, width, steps),
        )  # fmt: skip
    fitted = await estimate_seconds(redis, model="m", width=512, height=512, steps=50, count=4)
    assert fitted == pytest.approx(4 * seconds(overhead, rate, 512, 512, 50), rel=0.01)
    # A measured shape is answered from its own average.
    exact = await estimate_seconds(redis, model="m", width=256, height=256, steps=20)
    assert exact == pytest.approx(seconds(overhead, rate, 256, 256, 20))
    # Models are learned separately.
    other = await estimate_seconds(redis, model="other", width=512, height=512, steps=50)
    assert other == pytest.approx(DEFAULT_SECONDS_PER_MEGAPIXEL_STEP * 512 * 512 * 50 / 1e6)


async def test_the_fit_follows_a_model_that_got_faster(redis: Redis) -> None:
    for seconds_each in (10.0, 10.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0):
        for width in (256, 512):
            await record_seconds(
                redis, model="m", width=width, height=width, steps=10, count=1,
                seconds=seconds_each * (width / 512) ** 2,
            )  # fmt: skip
    estimate = await estimate_seconds(redis, model="m", width=1024, height=1024, steps=10)
    assert estimate == pytest.approx(2.0 * 4, rel=0.05)  # proportional to pixels: 4× the 512² time
