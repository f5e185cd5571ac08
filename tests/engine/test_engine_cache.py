"""The residency cache: a second request loads nothing, and a budget evicts the least recently used model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.engine import Engine, TextToImage
from engine.registry import Registry


def _generate(engine: Engine, registry: Registry, name: str) -> None:
    preset = registry.get(name)
    engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", steps=1))


@pytest.fixture(scope="module")
def sizes(registry: Registry, tiny_cache: Path) -> dict[str, int]:
    """Each tiny pipeline's measured size, from a cache with room for all three."""
    engine = Engine(registry, tiny_cache, device="cpu")
    for name in ("tiny", "tiny-sdxl", "tiny-flux"):
        engine.cache.get(registry.get(name))
    return engine.cache.sizes()


def test_a_second_request_loads_nothing(registry: Registry, tiny_cache: Path) -> None:
    engine = Engine(registry, tiny_cache, device="cpu")
    _generate(engine, registry, "tiny")
    assert (engine.cache.hits, engine.cache.misses) == (0, 1)
    first_load = engine.cache.load_seconds
    assert first_load > 0
    _generate(engine, registry, "tiny")
    _generate(engine, registry, "tiny")
    assert (engine.cache.hits, engine.cache.misses, engine.cache.evictions) == (2, 1, 0)
    assert engine.cache.load_seconds == first_load
    assert engine.cache.loaded() == ["tiny"]


def test_sizes_are_the_weights_bytes(registry: Registry, tiny_cache: Path, sizes: dict[str, int]) -> None:
    engine = Engine(registry, tiny_cache, device="cpu")
    pipeline = engine.cache.get(registry.get("tiny"))
    modules = [pipeline.unet, pipeline.vae, pipeline.text_encoder]
    tensors = [tensor for module in modules for tensor in [*module.parameters(), *module.buffers()]]
    assert sizes["tiny"] == sum(tensor.nbytes for tensor in tensors)
    float_parameters = sum(parameter.numel() for module in modules for parameter in module.parameters())
    assert float_parameters * 4 <= sizes["tiny"] < float_parameters * 4 * 1.01  # float32 weights dominate
    assert len(set(sizes.values())) == 3


def test_the_least_recently_used_model_is_evicted(
    registry: Registry, tiny_cache: Path, sizes: dict[str, int]
) -> None:
    a, b, c = "tiny", "tiny-sdxl", "tiny-flux"
    # Room for any two of the three models, never for all three.
    budget = sum(sizes.values()) - min(sizes.values())
    assert budget < sum(sizes.values())
    engine = Engine(registry, tiny_cache, device="cpu", memory_budget_bytes=budget)
    _generate(engine, registry, a)
    _generate(engine, registry, b)
    _generate(engine, registry, a)  # `b` is now the least recently used
    assert engine.cache.loaded() == [b, a]
    _generate(engine, registry, c)
    assert engine.cache.loaded() == [a, c]
    assert (engine.cache.misses, engine.cache.hits, engine.cache.evictions) == (3, 1, 1)
    assert engine.cache.resident_bytes <= budget
    _generate(engine, registry, b)  # `a` is the least recently used now
    assert engine.cache.loaded() == [c, b]
    assert (engine.cache.misses, engine.cache.evictions) == (4, 2)


def test_a_model_larger_than_the_budget_still_runs_alone(
    registry: Registry, tiny_cache: Path, sizes: dict[str, int]
) -> None:
    engine = Engine(registry, tiny_cache, device="cpu", memory_budget_bytes=min(sizes.values()) // 2)
    _generate(engine, registry, "tiny")
    _generate(engine, registry, "tiny-flux")
    assert engine.cache.loaded() == ["tiny-flux"]
    assert engine.cache.evictions == 1


def test_pipelines_are_placed_on_the_engine_device_in_its_dtype(registry: Registry, tiny_cache: Path) -> None:
    engine = Engine(registry, tiny_cache, device="cpu", dtype="bf16")
    pipeline = engine.cache.get(registry.get("tiny-flux"))
    assert pipeline.transformer.dtype == torch.bfloat16
    assert pipeline.device == torch.device("cpu")


def test_loads_on_two_threads_at_once_leave_transformers_as_it_was(
    registry: Registry, tiny_cache: Path
) -> None:
    """transformers' loading swaps process-wide functions while it runs (`PreTrainedModel.tie_weights`): two
    loads at once could leave them swapped, and every later T5 untied (engine.building). A worker loads a job's
    pipeline and its prompt classifier on two threads, as here: afterwards loading works as before."""
    import threading

    from transformers import PreTrainedModel

    from engine.cache import PipelineCache

    tie_weights = PreTrainedModel.tie_weights
    for _ in range(3):
        cpu = torch.device("cpu")
        caches = [PipelineCache(cache_dir=tiny_cache, device=cpu, dtype=torch.float32) for _ in range(3)]
        start = threading.Barrier(3)

        def load(cache: PipelineCache, name: str, start: threading.Barrier = start) -> None:
            start.wait()
            cache.get(registry.get(name))

        threads = [
            threading.Thread(target=load, args=(cache, name))
            for cache, name in zip(caches, ["tiny-flux", "tiny-sdxl", "tiny"], strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert PreTrainedModel.tie_weights is tie_weights
        flux = caches[0].get(registry.get("tiny-flux"))
        t5 = flux.text_encoder_2
        assert t5.encoder.embed_tokens.weight is t5.shared.weight
