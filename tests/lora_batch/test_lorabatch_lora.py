"""LoRAs: applied at their weights for one request, then gone; unknown or unfitting ones refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.engine import Engine, TextToImage
from engine.lora import LoraLibrary, UnknownLoraError
from engine.registry import Registry
from jobs.specs import imagine_spec


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _fox(registry: Registry, loras: tuple[tuple[str, float], ...] = (), name: str = "tiny") -> TextToImage:
    return TextToImage.for_preset(registry.get(name), "a red fox", seed=5, loras=loras)


def test_weight_zero_is_the_base_model_and_weight_one_is_not(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    [base] = engine.txt2img(preset, _fox(registry))
    [zero] = engine.txt2img(preset, _fox(registry, (("ink", 0.0),)))
    [one] = engine.txt2img(preset, _fox(registry, (("ink", 1.0),)))
    [after] = engine.txt2img(preset, _fox(registry))
    assert np.array_equal(_pixels(zero), _pixels(base))
    assert np.abs(_pixels(one) - _pixels(base)).mean() > 1
    # The cached pipeline is shared: the job after a LoRA job sees the untouched base model.
    assert np.array_equal(_pixels(after), _pixels(base))
    pipeline = engine.cache.get(preset)
    assert pipeline.get_list_adapters() == {}


def test_weights_and_combinations_change_the_image(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")
    images = {
        loras: _pixels(engine.txt2img(preset, _fox(registry, loras))[0])
        for loras in [(("ink", 0.5),), (("ink", 1.0),), (("paper", 1.0),), (("ink", 1.0), ("paper", 1.0))]
    }
    pictures = list(images.values())
    for i, first in enumerate(pictures):
        for second in pictures[i + 1 :]:
            assert not np.array_equal(first, second)
    # Weights are applied as asked: ink at 0.5 lies between the base and ink at 1.
    [base] = engine.txt2img(preset, _fox(registry))
    half = np.abs(images[(("ink", 0.5),)] - _pixels(base)).mean()
    assert 0 < half < np.abs(images[(("ink", 1.0),)] - _pixels(base)).mean()


def test_a_failed_generation_still_removes_the_lora(engine: Engine, registry: Registry) -> None:
    preset = registry.get("tiny")

    def cancel(step: int, total: int, preview: object) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        engine.txt2img(preset, _fox(registry, (("ink", 1.0),)), cancel)
    assert engine.cache.get(preset).get_list_adapters() == {}


def test_a_lora_for_another_model_or_a_broken_file_is_a_clear_error(
    engine: Engine, registry: Registry
) -> None:
    preset = registry.get("tiny")
    with pytest.raises(ValueError, match="LoRA 'sketch' does not fit model 'tiny'"):
        engine.txt2img(preset, _fox(registry, (("sketch", 1.0),)))
    with pytest.raises(ValueError, match="LoRA 'broken' does not fit model 'tiny'"):
        engine.txt2img(preset, _fox(registry, (("broken", 1.0),)))
    with pytest.raises(ValueError, match="LoRA 'ink' does not fit model 'tiny-sdxl'"):
        engine.txt2img(registry.get("tiny-sdxl"), _fox(registry, (("ink", 1.0),), "tiny-sdxl"))
    [base] = engine.txt2img(preset, _fox(registry))
    assert engine.cache.get(preset).get_list_adapters() == {}
    assert np.array_equal(_pixels(base), _pixels(engine.txt2img(preset, _fox(registry))[0]))


def test_the_library_lists_valid_names_and_refuses_unknown_ones(lora_dir: Path, tmp_path: Path) -> None:
    library = LoraLibrary(lora_dir)
    assert library.names() == ["broken", "ink", "paper", "sketch"]
    assert library.path("ink") == lora_dir / "ink.safetensors"
    for name in ("watercolor", "../ink", "not a name"):
        with pytest.raises(UnknownLoraError, match="known LoRAs: broken, ink, paper, sketch"):
            library.path(name)
    with pytest.raises(UnknownLoraError, match=r"no LoRAs are installed \(add <name>.safetensors files to"):
        LoraLibrary(tmp_path / "missing").path("ink")


def test_imagine_spec_checks_loras_before_anything_is_queued(registry: Registry, lora_dir: Path) -> None:
    library = LoraLibrary(lora_dir)
    spec = imagine_spec(
        registry, prompt="a fox", tiny=True, loras=[("ink", 0.8), ("paper", 1)], lora_library=library
    )
    assert spec.loras == [("ink", 0.8), ("paper", 1.0)]
    assert type(spec).model_validate(spec.model_dump(mode="json")).loras == spec.loras
    assert imagine_spec(registry, prompt="a fox", tiny=True).loras == []
    refused = {
        "unknown LoRA 'watercolor'; known LoRAs: broken, ink, paper, sketch": [("watercolor", 1.0)],
        "LoRA 'ink' is given twice": [("ink", 1.0), ("ink", 0.5)],
        "LoRA 'ink': the weight must be between -2 and 2 \\(got 2.5\\)": [("ink", 2.5)],
        "at most 4 LoRAs per request \\(got 5\\)": [("ink", 1.0)] * 5,
    }
    for message, loras in refused.items():
        with pytest.raises(ValueError, match=message):
            imagine_spec(registry, prompt="a fox", tiny=True, loras=loras, lora_library=library)
    with pytest.raises(ValueError, match="LoRAs are not available here"):
        imagine_spec(registry, prompt="a fox", tiny=True, loras=[("ink", 1.0)])
