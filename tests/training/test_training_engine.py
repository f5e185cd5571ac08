"""Training on the tiny presets, on the CPU: a LoRA file that diffusers loads, that changes images at weight 1
and not at weight 0, and a run stopped after a checkpoint that resumes there and ends where an unbroken run
ends; a run from the last step's checkpoint trains nothing more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.loading import load_pipeline
from engine.lora import applied_loras
from engine.registry import Registry
from engine.training import (
    aspect_buckets,
    bucket_for,
    check_trainable,
    checkpoint_step,
    defaults_for,
    read_dataset,
    train_lora,
)

REGISTRY = Registry.load()


def _pipeline(name: str, models_dir: Path):
    return load_pipeline(REGISTRY.get(name), cache_dir=models_dir, dtype=torch.float32)


def _config(**changes):
    base = {"resolution": 64, "steps": 8, "learning_rate": 5e-3, "checkpoint_every": 4, "sample_steps": 2}
    return defaults_for("sd15", **(base | changes))


def _image(pipeline, loras=(), model="tiny") -> np.ndarray:
    with applied_loras(pipeline, list(loras), model=model):
        out = pipeline(
            prompt="zq",
            num_inference_steps=3,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(1),
        )
    return np.asarray(out.images[0]).astype(int)


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl"])
def test_a_trained_lora_changes_images_at_weight_1_and_not_at_0(
    name: str, models_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    family = REGISTRY.get(name).family
    steps = []
    result = train_lora(
        _pipeline(name, models_dir),
        family,
        read_dataset(dataset_dir, "zq"),
        defaults_for(family, resolution=64, steps=8, learning_rate=5e-3, checkpoint_every=4, sample_steps=2),
        output=tmp_path / "ink.safetensors",
        checkpoint_dir=tmp_path / "checkpoints",
        trigger="zq",
        progress=lambda step, total, loss: steps.append((step, total, loss)),
    )
    assert [s[:2] for s in steps] == [(i, 8) for i in range(1, 9)] and all(np.isfinite(s[2]) for s in steps)
    assert result.resumed_at == 0 and len(result.samples) == 2 and result.samples[0].size == (64, 64)
    assert any(key.startswith("unet.") and "lora" in key for key in load_file(result.lora_path))
    fresh = _pipeline(name, models_dir)
    base = _image(fresh, model=name)
    with_lora = _image(fresh, [("ink", result.lora_path, 1.0)], model=name)
    at_zero = _image(fresh, [("ink", result.lora_path, 0.0)], model=name)
    assert np.abs(with_lora - base).max() > 0
    assert np.array_equal(at_zero, base)


def test_a_stopped_run_resumes_from_its_last_checkpoint(
    models_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    examples = read_dataset(dataset_dir, "zq")
    stored = []
    unbroken = train_lora(
        _pipeline("tiny", models_dir),
        "sd15",
        examples,
        _config(sample_count=0),
        output=tmp_path / "a.safetensors",
        checkpoint_dir=tmp_path / "a",
        trigger="zq",
        on_checkpoint=lambda path: stored.append(checkpoint_step(path)),
    )
    assert stored == [4, 8]

    class Crash(Exception):
        pass

    def crash_at_6(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise Crash

    with pytest.raises(Crash):
        train_lora(
            _pipeline("tiny", models_dir),
            "sd15",
            examples,
            _config(sample_count=0),
            output=tmp_path / "b.safetensors",
            checkpoint_dir=tmp_path / "b",
            trigger="zq",
            progress=crash_at_6,
        )
    assert not (tmp_path / "b.safetensors").exists()
    seen = []
    resumed = train_lora(
        _pipeline("tiny", models_dir),
        "sd15",
        examples,
        _config(sample_count=0),
        output=tmp_path / "b.safetensors",
        checkpoint_dir=tmp_path / "b",
        trigger="zq",
        progress=lambda step, total, loss: seen.append(step),
    )
    print(f"\nresumed at step {resumed.resumed_at}")
    assert resumed.resumed_at == 4 and seen == [5, 6, 7, 8]
    a, b = load_file(unbroken.lora_path), load_file(resumed.lora_path)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    # A retry after the last checkpoint (the worker died after storing the LoRA): no step runs again.
    seen.clear()
    again = train_lora(
        _pipeline("tiny", models_dir),
        "sd15",
        examples,
        _config(sample_count=0),
        output=tmp_path / "c.safetensors",
        checkpoint_dir=tmp_path / "b",
        trigger="zq",
        progress=lambda step, total, loss: seen.append(step),
    )
    assert again.resumed_at == 8 and seen == []
    c = load_file(again.lora_path)
    assert c.keys() == b.keys() and all(torch.equal(b[k], c[k]) for k in b)


def test_flux_cannot_be_trained_and_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"model 'flux-schnell' \(flux\) cannot be trained"):
        check_trainable("flux-schnell", "flux")
    with pytest.raises(ValueError, match="rank must be between 1 and 256"):
        defaults_for("sd15", rank=512)
    with pytest.raises(ValueError, match="learning rate must be above 0"):
        defaults_for("sdxl", learning_rate=0.0)


def test_images_go_to_the_bucket_nearest_their_aspect() -> None:
    buckets = aspect_buckets(512)
    assert (512, 512) in buckets and all(w * h <= 512 * 512 and w % 64 == h % 64 == 0 for w, h in buckets)
    assert bucket_for((1920, 1080), buckets) == (640, 384)
    assert bucket_for((1080, 1920), buckets) == (384, 640)
    assert bucket_for((1000, 1000), buckets) == (512, 512)
