"""The model's safety checker, run beside the pipeline: it flags images, it never changes them.

Stable Diffusion 1.5 ships a safety checker (a CLIP vision tower and the embeddings of 17 concepts plus 3
"special care" ones). Run inside the pipeline, it replaces every flagged image with a black square. A chat bot
wants something else: the image kept, and the decision of what to do with a flagged one (post it as a
spoiler, only in age-restricted channels, or withhold it) left to the server's setting, in the front-end.
So pipelines are loaded without their checker (`loading.load_pipeline`), and `SafetyChecker` scores the
finished images with the same weights and the same arithmetic:

    score(concept) = cos(image embedding, concept embedding) - concept threshold + adjustment

An image is flagged when any of the 17 concepts scores above 0; as in diffusers, a special-care concept scoring
above 0 does not flag by itself but adds 0.01 to the adjustment for the 17. `adjustment` is the preset's `safety_adjustment` (diffusers
uses 0.0; higher flags more). Presets whose family has no checker (SDXL, Flux) flag nothing.

The tiny preset carries a tiny checker built from config (random weights); `tiny-strict` is the same model with
an adjustment of 2.0, which makes every score positive (a cosine is at least -1, a tiny threshold is 1): it
flags every image, so the front-ends' handling of flagged images can be tried and tested offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPImageProcessor

from engine.building import exclusive
from engine.registry import Preset

SPECIAL_CARE_BOOST = 0.01  # what a special-care hit adds to the other concepts' scores (as in diffusers)


class SafetyChecker:
    """One preset's checker on a device; `flags(images)` says which images it flags."""

    def __init__(self, model: torch.nn.Module, processor: CLIPImageProcessor, adjustment: float) -> None:
        self.model = model
        self.processor = processor
        self.adjustment = adjustment

    @classmethod
    def load(
        cls, preset: Preset, source: str | Path, *, device: torch.device, dtype: torch.dtype
    ) -> SafetyChecker:
        """The checker stored beside the pipeline's weights (`safety_checker/` and `feature_extractor/` of
        `source`: a Hugging Face repo id or a local directory, such as a tiny build)."""
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        variant = {"variant": preset.variant} if preset.variant else {}
        with exclusive():  # transformers' loading is not thread-safe (engine.building)
            model = StableDiffusionSafetyChecker.from_pretrained(
                source, subfolder="safety_checker", torch_dtype=dtype, **variant
            )
            processor = CLIPImageProcessor.from_pretrained(source, subfolder="feature_extractor")
        return cls(model.to(device).eval(), processor, preset.safety_adjustment)

    @torch.inference_mode()
    def flags(self, images: list[Image.Image]) -> list[bool]:
        if not images:
            return []
        parameter = next(self.model.parameters())
        pixels = self.processor([image.convert("RGB") for image in images], return_tensors="pt").pixel_values
        pooled = self.model.vision_model(pixels.to(parameter.device, parameter.dtype))[1]
        embeds = self.model.visual_projection(pooled).float()
        special = _cosine(embeds, self.model.special_care_embeds.float())
        special = special - self.model.special_care_embeds_weights.float() + self.adjustment
        boost = (special > 0).any(dim=1).float() * SPECIAL_CARE_BOOST
        concepts = _cosine(embeds, self.model.concept_embeds.float())
        concepts = concepts - self.model.concept_embeds_weights.float() + self.adjustment + boost[:, None]
        flagged = (concepts > 0).any(dim=1)
        return [bool(value) for value in flagged.cpu()]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a) @ torch.nn.functional.normalize(b).t()
