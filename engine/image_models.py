"""Loading upscalers and face restorers with spandrel, and keeping the recently used ones resident.

A preset's `source` names one weight file: a local path, an https URL (downloaded once into the model cache)
or a Hugging Face "owner/repo/filename"; tiny presets are written by `engine.tiny_weights`. spandrel detects
the architecture from the state dict; the preset's `pipeline` says which one it must be, and an upscaler's
factor must match its family, so a wrong file fails with a message instead of producing odd images.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import time
import urllib.request
import warnings
from collections import OrderedDict
from pathlib import Path

import spandrel
import torch
from spandrel import ImageModelDescriptor

from engine.enhance_presets import upscale_factor
from engine.registry import Preset
from engine.tiny_weights import ensure_weights

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 2 * 2**30
"""Weights kept resident by default: every built-in upscaler and face restorer together fit in it."""

WEIGHT_SUFFIXES = (".pth", ".safetensors")


def _install_extra_architectures() -> None:
    """CodeFormer lives in spandrel_extra_arches (its licence is non-commercial); register it once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script in CodeFormer's module
        import spandrel_extra_arches

        spandrel_extra_arches.install(ignore_duplicates=True)


_install_extra_architectures()


def weights_path(preset: Preset, cache_dir: Path) -> Path:
    """The local weight file of `preset`, downloading real weights into `cache_dir` on first use."""
    if preset.is_tiny:
        return ensure_weights(preset, cache_dir)
    source = preset.source
    if not source.lower().endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            f"preset {preset.name!r}: source must be a .pth or .safetensors file (got {source!r})"
        )
    local = Path(source).expanduser()
    if local.is_file():
        return local
    if source.startswith("https://"):
        return _download(source, Path(cache_dir) / "downloads" / source.rsplit("/", 1)[1])
    parts = source.split("/")
    if len(parts) >= 3 and not source.startswith(("/", ".", "~")):
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
    raise ValueError(f"preset {preset.name!r}: weight file {source} does not exist")


def load_model(
    preset: Preset, *, cache_dir: Path, device: torch.device, dtype: torch.dtype
) -> ImageModelDescriptor:
    """The preset's model on `device`, in `dtype` where the architecture supports it (else float32), in eval mode."""
    path = weights_path(preset, cache_dir)
    model = spandrel.ModelLoader().load_from_file(path)
    if not isinstance(model, ImageModelDescriptor) or model.architecture.id != preset.pipeline:
        raise ValueError(
            f"preset {preset.name!r} expects {preset.pipeline} weights, but {path.name} holds "
            f"{model.architecture.name}"
        )
    if preset.role == "upscale" and model.scale != upscale_factor(preset):
        raise ValueError(
            f"preset {preset.name!r} is family {preset.family}, but {path.name} upscales x{model.scale}"
        )
    if dtype == torch.float16 and not model.supports_half:
        dtype = torch.bfloat16 if model.supports_bfloat16 else torch.float32
    if dtype == torch.bfloat16 and not model.supports_bfloat16:
        dtype = torch.float32
    model.to(device=device, dtype=dtype)
    model.eval()
    return model


def model_bytes(model: ImageModelDescriptor) -> int:
    """Memory held by a model's parameters and buffers."""
    tensors = [*model.model.parameters(), *model.model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class ImageModelCache:
    """spandrel models by preset name, least recently used first, within a memory budget (as `PipelineCache`
    does for diffusers pipelines). Used from the engine's single GPU thread, so it takes no locks."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        memory_budget_bytes: int | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.dtype = dtype
        self.budget = DEFAULT_BUDGET_BYTES if memory_budget_bytes is None else memory_budget_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.load_seconds = 0.0
        self._models: OrderedDict[str, ImageModelDescriptor] = OrderedDict()

    def get(self, preset: Preset) -> ImageModelDescriptor:
        """The preset's model on the device, loaded unless already resident."""
        if preset.name in self._models:
            self.hits += 1
            self._models.move_to_end(preset.name)
            return self._models[preset.name]
        self.misses += 1
        started = time.perf_counter()
        model = load_model(preset, cache_dir=self.cache_dir, device=torch.device("cpu"), dtype=self.dtype)
        size = model_bytes(model)
        while self._models and self.resident_bytes + size > self.budget:
            oldest = next(iter(self._models))
            log.info("evicting %s to make room for %s", oldest, preset.name)
            self.evict(oldest)
        model.to(self.device)
        self.load_seconds += time.perf_counter() - started
        self._models[preset.name] = model
        return model

    def loaded(self) -> list[str]:
        """Names of the resident models, least recently used first."""
        return list(self._models)

    @property
    def resident_bytes(self) -> int:
        return sum(model_bytes(model) for model in self._models.values())

    def evict(self, name: str) -> None:
        """Drop one resident model and give its memory back to the device."""
        del self._models[name]
        self.evictions += 1
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _download(url: str, target: Path) -> Path:
    """Fetch `url` into `target` once: a partial download never sits at the final path."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(staging, target)
    except OSError as exc:
        raise RuntimeError(
            f"could not download {url} ({exc}); put the file at {target} or point the preset's source at it"
        ) from exc
    finally:
        Path(staging).unlink(missing_ok=True)
    return target
