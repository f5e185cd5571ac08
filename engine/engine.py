"""The engine: runs text-to-image requests on resident pipelines, reporting progress after every step.

`Engine.txt2img` and `Engine.txt2img_batch` block; the worker calls them from one dedicated GPU thread. The
engine holds no global state: everything it needs (device, dtype, cache, LoRA library) lives on the instance.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import diffusers
import torch
import transformers
from PIL import Image

from engine.batching import MemberResult, batch_key, free_memory, generate, images_that_fit, resumable
from engine.cache import PipelineCache
from engine.classifiers import image_scores, text_score
from engine.device import choose_device, choose_dtype
from engine.generate import ProgressFn, TextToImage, check_request
from engine.loading import weights_source
from engine.lora import LoraLibrary, applied_loras
from engine.registry import Preset, Registry
from engine.safety import SafetyChecker
from engine.seamless import seamless

__all__ = ["Engine", "MemberResult", "ProgressFn", "TextToImage"]


class Engine:
    """Text-to-image on one device, with a residency cache of pipelines."""

    def __init__(
        self,
        registry: Registry,
        cache_dir: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        memory_budget_bytes: int | None = None,
        lora_dir: Path | None = None,
    ) -> None:
        # Progress is reported per step through `progress`; tqdm bars from loading and sampling would only
        # clutter a worker's log and the CLI's terminal.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.registry = registry
        self.loras = LoraLibrary(lora_dir)
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self._cache = PipelineCache(
            cache_dir=Path(cache_dir),
            device=self.device,
            dtype=self.dtype,
            memory_budget_bytes=memory_budget_bytes,
        )
        self._checkers: dict[str, SafetyChecker] = {}

    @property
    def cache(self) -> PipelineCache:
        """The residency cache, for its statistics (hits, misses, load seconds, evictions)."""
        return self._cache

    @torch.inference_mode()
    def txt2img(
        self,
        preset: Preset,
        request: TextToImage,
        progress: ProgressFn | None = None,
        *,
        preview_every: int = 1,
    ) -> list[Image.Image]:
        """Generate `request.count` images; raises ValueError, before loading anything, for a request the
        preset's limits reject. `progress` gets a preview every `preview_every` steps (0: never); what it
        raises propagates (that is how a generation is cancelled)."""
        check_request(preset, request)
        [result] = self.txt2img_batch(preset, [request], [progress], preview_every=preview_every)
        if isinstance(result, BaseException):
            raise result
        return result

    @torch.inference_mode()
    def txt2img_batch(
        self,
        preset: Preset,
        requests: Sequence[TextToImage],
        progress: Sequence[ProgressFn | None] | None = None,
        *,
        preview_every: int = 1,
    ) -> list[MemberResult]:
        """Generate for several requests with equal `batch_key`s in as few pipeline calls as memory allows.

        Returns, per request, its images or the exception that stopped it: a ValueError for a request the
        preset rejects, or what its own progress callback raised (the others go on; see engine.batching).
        """
        if preview_every < 0:
            raise ValueError(f"preview_every must be 0 (no previews) or more (got {preview_every})")
        reports = [None] * len(requests) if progress is None else list(progress)
        if len(reports) != len(requests):
            raise ValueError(f"{len(requests)} requests but {len(reports)} progress callbacks")
        if len({batch_key(preset, request) for request in requests}) > 1:
            raise ValueError("a batch needs requests with the same model, size, steps, guidance and LoRAs")
        results: list[MemberResult | None] = [None] * len(requests)
        runnable = []
        for member, request in enumerate(requests):
            try:
                check_request(preset, request)
                runnable.append(member)
            except ValueError as error:
                results[member] = error
        if runnable:
            first = requests[runnable[0]]
            loras = [(name, self.loras.path(name), weight) for name, weight in first.loras]
            pipeline = self._cache.get(preset)
            capacity = self.batch_capacity(first.width, first.height)
            with applied_loras(pipeline, loras, model=preset.name), seamless(pipeline, first.tile):
                for chunk in _chunks(runnable, [request.count for request in requests], capacity):
                    made = generate(
                        pipeline,
                        preset,
                        [requests[member] for member in chunk],
                        [reports[member] for member in chunk],
                        preview_every=preview_every,
                    )
                    for member, result in zip(chunk, made, strict=True):
                        results[member] = result
        return results  # type: ignore[return-value]  # every member has its result now

    def resumable(self, preset: Preset) -> bool:
        """Whether `preset`'s generations can be pre-empted between steps and resumed from their latents with
        the same result (engine.batching.resumable). Loads the pipeline: call it from the GPU thread."""
        return resumable(self._cache.get(preset), preset)

    @torch.inference_mode()
    def safety_flags(self, preset: Preset, images: Sequence[Image.Image]) -> list[bool]:
        """Which images are flagged, by the uniform image classifier (engine.classifiers, for every model) or
        by the preset's own safety checker where it ships one (engine.safety: SD 1.5): either flags. The
        images are not changed. Both load on first use and stay resident beside the pipelines."""
        classifier = self.registry.image_classifier(preset)
        scores = image_scores(self._cache, classifier, list(images))
        flags = [score >= classifier.safety_threshold for score in scores]
        if not preset.safety_checker:
            return flags
        return [a or b for a, b in zip(flags, self._checker_flags(preset, images), strict=True)]

    def prompt_score(self, preset: Preset, prompt: str) -> float:
        """The prompt-safety classifier `preset`'s score of `prompt` (engine.classifiers)."""
        return text_score(self._cache, preset, prompt)

    def _checker_flags(self, preset: Preset, images: Sequence[Image.Image]) -> list[bool]:
        checker = self._checkers.get(preset.name)
        if checker is None:
            source = weights_source(preset, self._cache.cache_dir)
            checker = SafetyChecker.load(preset, source, device=self.device, dtype=self.dtype)
            self._checkers[preset.name] = checker
        return checker.flags(list(images))

    def batch_key(self, preset: Preset, request: TextToImage) -> Hashable:
        """Requests with equal keys may be passed to one `txt2img_batch` call."""
        return batch_key(preset, request)

    def batch_capacity(self, width: int, height: int) -> int:
        """How many images of this size one pipeline call may make in the device memory free now."""
        return images_that_fit(width, height, free_bytes=free_memory(self.device), dtype=self.dtype)


def _chunks(members: list[int], counts: list[int], capacity: int) -> list[list[int]]:
    """Consecutive groups of members with at most `capacity` images each (a member alone may exceed it)."""
    chunks: list[list[int]] = []
    images = 0
    for member in members:
        if chunks and images + counts[member] <= capacity:
            chunks[-1].append(member)
            images += counts[member]
        else:
            chunks.append([member])
            images = counts[member]
    return chunks
