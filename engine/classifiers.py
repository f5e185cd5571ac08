"""The uniform safety classifiers: an image classifier run on every output whatever the model, and a text
classifier for prompts (jobs.prompt_check), both through transformers' Auto classes.

Each gives a score in [0, 1]: the softmax probability of the label whose name is "nsfw" (any case; the real
presets name theirs `nsfw` and `NSFW`), plus the preset's `safety_adjustment`. An image is flagged, or a prompt
refused, when the score reaches the preset's `safety_threshold`.

Their tiny counterparts (engine.tiny_guided) are built from configs with random weights and a classification
head of zeros, so every input scores exactly 0.5: below the tiny presets' threshold of 0.6, so nothing is
flagged by chance. The `-strict` tiny presets add 1.0, so everything is: the front-ends' handling of a flag can
then be tested offline on any model, as `tiny-strict` does for the SD 1.5 checker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from engine.cache import PipelineCache
from engine.registry import Preset
from engine.tiny_guided import ensure_built

ROLES = ("image-safety", "prompt-safety")


@torch.inference_mode()
def image_scores(cache: PipelineCache, preset: Preset, images: list[Image.Image]) -> list[float]:
    """The classifier's score of each image (see the module doc)."""
    if preset.role != "image-safety":
        raise ValueError(f"{preset.name} is not an image-safety classifier")
    if not images:
        return []
    model, processor = cache.get_model(preset, lambda: _load(preset, cache))
    pixels = processor(images=[image.convert("RGB") for image in images], return_tensors="pt").pixel_values
    logits = model(pixel_values=pixels.to(model.device, model.dtype)).logits
    return _scores(model, logits, preset)


@torch.inference_mode()
def text_score(cache: PipelineCache, preset: Preset, text: str) -> float:
    """The classifier's score of one prompt (see the module doc)."""
    if preset.role != "prompt-safety":
        raise ValueError(f"{preset.name} is not a prompt-safety classifier")
    model, tokenizer = cache.get_model(preset, lambda: _load(preset, cache))
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=128).to(model.device)
    return _scores(model, model(**inputs).logits, preset)[0]


def _scores(model: Any, logits: torch.Tensor, preset: Preset) -> list[float]:
    labels = {str(name).lower(): int(index) for index, name in model.config.id2label.items()}
    if "nsfw" not in labels:
        raise ValueError(f"{preset.name} has no 'nsfw' label (its labels: {', '.join(sorted(labels))})")
    probability = logits.float().softmax(dim=-1)[:, labels["nsfw"]]
    return [float(value) + preset.safety_adjustment for value in probability.cpu()]


class _Resident(tuple):
    """A model and its processor, kept in the cache; `to(device)` moves the model. (engine.guided has the same
    pair, but importing it imports diffusers' pipelines, which a front-end checking prompts has no use for.)"""

    def to(self, device: torch.device) -> _Resident:
        self[0].to(device)
        return self


def _load(preset: Preset, cache: PipelineCache) -> tuple[_Resident, int]:
    import transformers

    source = ensure_built(preset, cache.cache_dir) if preset.is_tiny else preset.source
    dtype = cache.dtype if cache.device.type == "cuda" else torch.float32
    model = getattr(transformers, preset.pipeline).from_pretrained(source, dtype=dtype).eval()
    processor = transformers.AutoProcessor.from_pretrained(
        str(source) if isinstance(source, Path) else source
    )
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return _Resident((model, processor)), size
