"""Batching: compatible requests share one pipeline call and every image equals its lone self (within float
tolerance); a member that cancels is dropped alone; the worker's batcher groups what is compatible."""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from engine.engine import Engine, TextToImage
from engine.registry import Registry
from jobs.batching import GpuBatcher

TOLERANCE = 3
"""Largest difference of any pixel channel (of 255) between a batched image and the same image made alone:
batched matrix products round differently, and a few denoising steps carry that into the last bit of a pixel."""


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _assert_close(batched: list[Image.Image], alone: list[Image.Image]) -> None:
    assert len(batched) == len(alone)
    for one, other in zip(batched, alone, strict=True):
        assert np.abs(_pixels(one) - _pixels(other)).max() <= TOLERANCE


def _requests(registry: Registry, name: str, n: int = 3, **options: object) -> list[TextToImage]:
    """`n` compatible requests with different prompts and seeds, of 1, 2, 1, … images."""
    preset = registry.get(name)
    prompts = ["a red fox", "a lighthouse at dusk", "a bowl of plums", "a red fox"][:n]
    return [
        TextToImage.for_preset(
            preset, prompt, width=64, height=96, steps=3, seed=10 * i, count=1 + i % 2, **options
        )
        for i, prompt in enumerate(prompts)
    ]


@functools.cache
def _alone(engine: Engine, name: str, request: TextToImage) -> list[Image.Image]:
    """The request's images made alone (remembered: several tests compare against the same ones)."""
    return engine.txt2img(engine.registry.get(name), request)


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-flux"])
def test_a_batch_gives_each_request_the_images_it_gets_alone(
    engine: Engine, registry: Registry, name: str
) -> None:
    preset = registry.get(name)
    requests = _requests(registry, name)
    alone = [_alone(engine, name, request) for request in requests]
    batched = engine.txt2img_batch(preset, requests)
    for images, expected in zip(batched, alone, strict=True):
        assert not isinstance(images, BaseException)
        _assert_close(images, expected)
    # Different prompts and seeds stay different pictures inside one batch.
    assert not np.array_equal(_pixels(batched[0][0]), _pixels(batched[1][0]))


def test_negative_prompts_and_loras_batch_too(engine: Engine, registry: Registry) -> None:
    for name, options in [("tiny-sdxl", {"negative": "blurry"}), ("tiny", {"loras": (("ink", 0.7),)})]:
        preset = registry.get(name)
        requests = _requests(registry, name, 2, **options)
        alone = [_alone(engine, name, request) for request in requests]
        for images, expected in zip(engine.txt2img_batch(preset, requests), alone, strict=True):
            _assert_close(images, expected)  # type: ignore[arg-type]


def test_incompatible_requests_are_refused_as_one_batch(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    a, b = _requests(registry, "tiny")[:2]
    for other in [
        TextToImage.for_preset(preset, "x", width=64, height=96, steps=4),
        TextToImage.for_preset(preset, "x", width=64, height=96, steps=3, loras=(("ink", 1.0),)),
        TextToImage.for_preset(preset, "x", width=64, height=96, steps=3, negative="text"),
    ]:
        with pytest.raises(ValueError, match="same model, size, steps, guidance and LoRAs"):
            engine.txt2img_batch(preset, [a, other])
    # A member the preset rejects gets its own error; the others still run.
    bad = TextToImage.for_preset(preset, "x", width=64, height=96, steps=3, count=9)
    results = engine.txt2img_batch(preset, [a, bad, b])
    assert isinstance(results[1], ValueError) and "count must be between 1 and 4" in str(results[1])
    _assert_close(results[0], _alone(engine, "tiny", a))  # type: ignore[arg-type]


def test_a_member_that_cancels_is_dropped_and_the_others_finish(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    requests = _requests(registry, "tiny")[:3]
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def reporter(member: int):
        def report(step: int, total: int, preview: Image.Image | None) -> None:
            assert preview is not None and preview.size == (8, 12)
            seen[member].append(step)
            if member == 1 and step == 2:
                raise KeyError("cancelled by its user")

        return report

    results = engine.txt2img_batch(preset, requests, [reporter(0), reporter(1), reporter(2)])
    assert isinstance(results[1], KeyError)
    assert seen == {0: [1, 2, 3], 1: [1, 2], 2: [1, 2, 3]}
    _assert_close(results[0], _alone(engine, "tiny", requests[0]))  # type: ignore[arg-type]
    _assert_close(results[2], _alone(engine, "tiny", requests[2]))  # type: ignore[arg-type]


def test_when_every_member_cancels_the_call_stops(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    requests = [*_requests(registry, "tiny")[:2]]
    requests = [TextToImage.for_preset(preset, r.prompt, width=64, height=96, steps=20) for r in requests]
    steps: list[int] = []

    def stop(step: int, total: int, preview: Image.Image | None) -> None:
        steps.append(step)
        raise RuntimeError(f"stop at {step}")

    results = engine.txt2img_batch(preset, requests, [stop, stop])
    assert [str(r) for r in results] == ["stop at 1", "stop at 1"]
    assert steps == [1, 1]


def test_memory_splits_a_batch_into_calls(engine: Engine, registry: Registry, monkeypatch) -> None:
    preset = registry.get("tiny")
    requests = _requests(registry, "tiny", 4)  # 1 + 2 + 1 + 2 images
    whole = engine.txt2img_batch(preset, requests)
    assert engine.batch_capacity(64, 96) >= 6
    calls: list[int] = []
    pipeline = engine.cache.get(preset)
    original = type(pipeline).__call__

    def counting(self, *args, **kwargs):
        calls.append(len(kwargs["generator"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "__call__", counting)
    monkeypatch.setattr(engine, "batch_capacity", lambda width, height: 3)
    split = engine.txt2img_batch(preset, requests)
    assert calls == [3, 3]
    for images, expected in zip(split, whole, strict=True):
        _assert_close(images, expected)  # type: ignore[arg-type]


async def _until_waiting(batcher: GpuBatcher, count: int) -> None:
    for _ in range(5000):
        if batcher.waiting >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{batcher.waiting} requests waiting, expected {count}")


async def test_the_batcher_groups_waiting_compatible_requests(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    gpu = ThreadPoolExecutor(1)
    batcher = GpuBatcher(engine, gpu, max_images=4)
    compatible = [_requests(registry, "tiny", 1)[0]] * 3 + _requests(registry, "tiny", 3)[1:]
    other_size = TextToImage.for_preset(preset, "fox", width=96, height=64, steps=3, seed=1)
    order = [*compatible[:3], other_size, *compatible[3:]]  # 1+1+1 images, 1 other, then 2 + 1
    busy = threading.Event()
    gpu.submit(busy.wait)  # the GPU thread is busy: every request below waits and can be grouped
    tasks = [asyncio.create_task(batcher.txt2img(preset, request)) for request in order]
    await _until_waiting(batcher, len(order))
    busy.set()
    results = await asyncio.gather(*tasks)
    # Oldest first, filled up to 4 images: the three 1-image ones and the last one (the 2-image one does not
    # fit, and is first in line next), then the other size alone, then the 2-image one.
    assert batcher.batch_sizes == {4: 1, 1: 2}
    for result, request in zip(results, order, strict=True):
        if request is other_size:
            assert [image.size for image in result] == [(96, 64)]
        else:
            _assert_close(result, _alone(engine, "tiny", request))
    gpu.shutdown()


async def test_a_cancelled_request_leaves_the_others_alone(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    gpu = ThreadPoolExecutor(1)
    batcher = GpuBatcher(engine, gpu, max_images=4)
    first, _, third = requests = _requests(registry, "tiny")
    busy = threading.Event()
    gpu.submit(busy.wait)
    waiting, kept, other = (asyncio.create_task(batcher.txt2img(preset, r)) for r in requests)
    await _until_waiting(batcher, 3)
    waiting.cancel()  # cancelled while waiting: it never reaches the GPU
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert batcher.waiting == 2
    busy.set()
    assert len(await kept) == 2
    _assert_close(await other, _alone(engine, "tiny", third))
    assert batcher.batch_sizes == {2: 1}

    # Cancelled while its batch runs: the engine drops it at the next step; the other member finishes.
    steps: list[int] = []
    started, gate = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def hold_at_first_step(step: int, total: int, preview: Image.Image | None) -> None:
        steps.append(step)
        loop.call_soon_threadsafe(started.set)
        gate.wait()

    slow = asyncio.create_task(batcher.txt2img(preset, first, hold_at_first_step))
    survivor = asyncio.create_task(batcher.txt2img(preset, third))
    await started.wait()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    gate.set()
    _assert_close(await survivor, _alone(engine, "tiny", third))
    assert steps == [1]  # never called again once its job was cancelled
    assert batcher.batch_sizes == {2: 2}
    gpu.shutdown()


async def test_a_failing_call_fails_every_member(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    batcher = GpuBatcher(engine, ThreadPoolExecutor(1), max_images=4)
    request = TextToImage.for_preset(preset, "fox", steps=3, loras=(("sketch", 1.0),))
    results = await asyncio.gather(
        batcher.txt2img(preset, request), batcher.txt2img(preset, request), return_exceptions=True
    )
    assert [type(result) for result in results] == [ValueError, ValueError]
    assert "LoRA 'sketch' does not fit model 'tiny'" in str(results[0])
    with pytest.raises(ValueError, match="max_images must be at least 1"):
        GpuBatcher(engine, ThreadPoolExecutor(1), max_images=0)
