"""/describe: four prompts that would make an image like the one given.

A captioning model (BLIP) writes four captions by beam search (the four best beams, deterministic), and a CLIP
model ranks a small built-in vocabulary of style words by similarity to the image (a CLIP interrogation). Each
prompt is a caption followed by two style words, prompt i taking the ranked words 2i and 2i + 1, so the four
differ in style as well as wording. Both models stay resident in the pipeline cache's budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from engine.cache import PipelineCache
from engine.registry import Preset
from engine.tiny_guided import ensure_built

PROMPTS = 4
CAPTION_TOKENS = 30

STYLE_WORDS = (
    "photograph",
    "oil painting",
    "watercolor",
    "pencil sketch",
    "ink drawing",
    "digital art",
    "3d render",
    "anime",
    "comic book",
    "pixel art",
    "concept art",
    "illustration",
    "impressionism",
    "surrealism",
    "art nouveau",
    "minimalism",
    "cinematic lighting",
    "golden hour",
    "studio lighting",
    "soft focus",
    "high contrast",
    "pastel colors",
    "vibrant colors",
    "muted colors",
    "black and white",
    "film grain",
    "bokeh",
    "wide angle",
    "macro",
    "isometric",
)
"""What the interrogation chooses from: media, movements, light, colour and lens words."""


@torch.inference_mode()
def describe(cache: PipelineCache, captioner: Preset, interrogator: Preset, image: Image.Image) -> list[str]:
    """Four prompts for `image`, one per caption; see the module doc."""
    if captioner.role != "captioner" or interrogator.role != "interrogator":
        raise ValueError(f"{captioner.name} / {interrogator.name} are not a captioner and an interrogator")
    image = image.convert("RGB")
    captions = _captions(cache.get_model(captioner, lambda: _load(captioner, cache)), image)
    styles = _styles(cache.get_model(interrogator, lambda: _load(interrogator, cache)), image)
    return [f"{caption}, {styles[2 * i]}, {styles[2 * i + 1]}" for i, caption in enumerate(captions)]


def _captions(loaded: Any, image: Image.Image) -> list[str]:
    model, processor = loaded
    inputs = processor(images=image, return_tensors="pt").to(model.device)
    out = model.generate(
        pixel_values=inputs["pixel_values"].to(model.dtype),
        num_beams=PROMPTS,
        num_return_sequences=PROMPTS,
        min_new_tokens=3,
        max_new_tokens=CAPTION_TOKENS,
    )
    captions = [" ".join(processor.decode(ids, skip_special_tokens=True).split()) for ids in out]
    return [caption or "an image" for caption in captions]


def _styles(loaded: Any, image: Image.Image) -> list[str]:
    """Every style word, most similar to the image first."""
    model, processor = loaded
    inputs = processor(
        text=[f"a {word}" for word in STYLE_WORDS], images=image, return_tensors="pt", padding=True
    ).to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    similarity = model(**inputs).logits_per_image[0]
    return [STYLE_WORDS[i] for i in similarity.argsort(descending=True).tolist()]


def _load(preset: Preset, cache: PipelineCache) -> tuple[Any, int]:
    import transformers

    from engine.guided import _module_bytes, _Resident

    source = ensure_built(preset, cache.cache_dir) if preset.is_tiny else preset.source
    dtype = cache.dtype if cache.device.type == "cuda" else torch.float32
    model = getattr(transformers, preset.pipeline).from_pretrained(source, dtype=dtype).eval()
    processor = transformers.AutoProcessor.from_pretrained(
        str(source) if isinstance(source, Path) else source
    )
    return _Resident(model, processor), _module_bytes(model)
