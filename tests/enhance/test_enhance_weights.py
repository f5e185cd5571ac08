"""Tiny upscaler and face restorer weights: written once in the real files' key layout, then loaded by spandrel
from the file exactly as real weights are, and a weight file that does not match its preset is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import spandrel
import torch

from engine.enhance_presets import face_restorer_for, upscale_factor, upscaler_for
from engine.image_models import ImageModelCache, load_model, model_bytes, weights_path
from engine.registry import Registry
from engine.tiny_weights import ensure_weights

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "scale", "in_channels"), [("tiny-upscale-x4", 4, 3), ("tiny-upscale-x2", 2, 12)]
)
def test_tiny_upscalers_are_real_esrgan_files_that_spandrel_detects(
    registry: Registry, models_dir: Path, name: str, scale: int, in_channels: int
) -> None:
    path = ensure_weights(registry.get(name), models_dir)
    state = torch.load(path, weights_only=True)
    assert list(state) == ["params_ema"]  # wrapped as RealESRGAN_x4plus.pth and RealESRGAN_x2plus.pth are
    weights = state["params_ema"]
    assert weights["conv_first.weight"].shape[1] == in_channels  # x2plus reads a pixel-unshuffled input
    assert {"body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up2.weight", "conv_last.weight"} <= set(
        weights
    )
    assert weights["body.0.rdb1.conv1.weight"].shape[0] == 32  # the growth channels spandrel assumes

    model = spandrel.ModelLoader().load_from_file(path)
    assert (model.architecture.id, model.scale, model.input_channels) == ("ESRGAN", scale, 3)


def test_weights_are_written_once_and_reused(registry: Registry, models_dir: Path) -> None:
    preset = registry.get("tiny-upscale-x4")
    path = ensure_weights(preset, models_dir)
    before = path.stat().st_mtime_ns
    assert ensure_weights(preset, models_dir) == path
    assert path.stat().st_mtime_ns == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging file left behind


def test_the_same_preset_always_gets_the_same_weights(
    registry: Registry, tmp_path: Path, models_dir: Path
) -> None:
    preset = registry.get("tiny-upscale-x2")
    again = ensure_weights(preset, tmp_path)
    assert again.read_bytes() != b"" and torch.equal(
        torch.load(again, weights_only=True)["params_ema"]["conv_first.weight"],
        torch.load(ensure_weights(preset, models_dir), weights_only=True)["params_ema"]["conv_first.weight"],
    )


def test_a_real_preset_loads_a_local_weight_file(
    registry: Registry, models_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "my-x2.pth"
    local.write_bytes(ensure_weights(registry.get("tiny-upscale-x2"), models_dir).read_bytes())
    preset = replace(registry.get("realesrgan-x2"), source=str(local))
    assert weights_path(preset, tmp_path) == local
    model = load_model(preset, cache_dir=tmp_path, device=CPU, dtype=torch.float32)
    assert model.scale == 2


def test_weights_that_do_not_match_the_preset_are_refused(
    registry: Registry, models_dir: Path, tmp_path: Path
) -> None:
    x2_weights = tmp_path / "x2.pth"
    x2_weights.write_bytes(ensure_weights(registry.get("tiny-upscale-x2"), models_dir).read_bytes())
    claims_x4 = replace(registry.get("realesrgan-x4"), source=str(x2_weights))
    with pytest.raises(ValueError, match=r"family x4, but x2\.pth upscales x2"):
        load_model(claims_x4, cache_dir=tmp_path, device=CPU, dtype=torch.float32)
    claims_face = replace(registry.get("gfpgan-1.4"), source=str(x2_weights))
    with pytest.raises(ValueError, match=r"expects GFPGAN weights, but x2\.pth holds ESRGAN"):
        load_model(claims_face, cache_dir=tmp_path, device=CPU, dtype=torch.float32)
    missing = replace(registry.get("realesrgan-x4"), source=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="does not exist"):
        weights_path(missing, tmp_path)


def test_the_tiny_face_restorers_load_as_their_architectures(enhancer, registry: Registry) -> None:
    # Loaded through the session enhancer's cache, so the face tests reuse them instead of loading again.
    for name, size in (("tiny-gfpgan", 512), ("tiny-codeformer", 512)):
        model = enhancer.cache.get(registry.get(name))
        assert model.architecture.id == registry.get(name).pipeline
        assert max(model.size_requirements.minimum, model.size_requirements.multiple_of) == size


def test_the_cache_keeps_models_within_its_budget_least_recently_used_first(
    registry: Registry, models_dir: Path
) -> None:
    x4, x2 = registry.get("tiny-upscale-x4"), registry.get("tiny-upscale-x2")
    one = model_bytes(load_model(x4, cache_dir=models_dir, device=CPU, dtype=torch.float32))
    cache = ImageModelCache(
        cache_dir=models_dir, device=CPU, dtype=torch.float32, memory_budget_bytes=int(1.5 * one)
    )
    first = cache.get(x4)
    assert cache.get(x4) is first and (cache.hits, cache.misses) == (1, 1)
    cache.get(x2)
    assert cache.loaded() == ["tiny-upscale-x2"] and cache.evictions == 1 and cache.misses == 2


def test_presets_name_their_factor_and_fidelity_is_codeformers_alone(registry: Registry) -> None:
    assert [upscale_factor(upscaler_for(registry, scale=s, model=None, tiny=True)) for s in (2, 4)] == [2, 4]
    assert upscaler_for(registry, scale=None, model=None).name == "realesrgan-x4"
    assert upscaler_for(registry, scale=2, model=None).name == "realesrgan-x2"
    with pytest.raises(ValueError, match="scale must be 2 or 4"):
        upscaler_for(registry, scale=3, model=None)
    with pytest.raises(ValueError, match="upscales x2, not x4"):
        upscaler_for(registry, scale=4, model="realesrgan-x2")
    assert face_restorer_for(registry, model=None, tiny=True).name == "tiny-gfpgan"
    assert face_restorer_for(registry, model="codeformer", fidelity=0.9, tiny=True).name == "tiny-codeformer"
    with pytest.raises(ValueError, match="fidelity applies to CodeFormer only"):
        face_restorer_for(registry, model=None, fidelity=0.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        face_restorer_for(registry, model="codeformer", fidelity=1.5)
