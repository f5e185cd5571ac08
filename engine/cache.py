"""Residency cache: keeps as many pipelines on the device as fit a memory budget, evicting the least recently
used, so switching back to a popular model costs nothing and a worker never holds more than it can.

A pipeline's size is measured from its parameters and buffers after loading it on the CPU, then the least
recently used pipelines are evicted until it fits, and only then is it moved to the device. Used from the
engine's single GPU thread, so it takes no locks.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import torch

from engine.building import exclusive
from engine.loading import load_pipeline, pipeline_bytes, place
from engine.registry import Preset

log = logging.getLogger(__name__)

DEVICE_SHARE = 0.75
"""Share of a GPU's memory given to resident weights by default; the rest is left for activations."""

HOST_SHARE = 0.5
"""Share of the machine's RAM given to resident weights by default when running on the CPU."""


def default_budget(device: torch.device) -> int:
    """The memory budget used when none is configured: a share of the device's (or the host's) memory."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory * DEVICE_SHARE)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * HOST_SHARE)


class PipelineCache:
    """Pipelines by preset name, least recently used first."""

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
        self.budget = default_budget(device) if memory_budget_bytes is None else memory_budget_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.load_seconds = 0.0
        self._pipelines: OrderedDict[str, diffusers.DiffusionPipeline] = OrderedDict()
        self._sizes: dict[str, int] = {}

    def get(self, preset: Preset) -> diffusers.DiffusionPipeline:
        """The preset's pipeline on the device, loaded with `from_pretrained` unless already resident."""
        if preset.name in self._pipelines:
            self.hits += 1
            self._pipelines.move_to_end(preset.name)
            return self._pipelines[preset.name]
        self.misses += 1
        started = time.perf_counter()
        pipeline = load_pipeline(preset, cache_dir=self.cache_dir, dtype=self.dtype)
        size = pipeline_bytes(pipeline)
        self._make_room(size, for_name=preset.name)
        place(pipeline, self.device)
        self.load_seconds += time.perf_counter() - started
        self._pipelines[preset.name] = pipeline
        self._sizes[preset.name] = size
        return pipeline

    def get_model(self, preset: Preset, load: Callable[[], tuple[Any, int]]) -> Any:
        """A guidance model of `preset` (a ControlNet, an annotator, an IP-Adapter; engine.guided), resident
        beside the pipelines and counted in the same budget. `load` builds it on the CPU and returns it with its
        size in bytes; it is moved to the device here, after room is made."""
        if preset.name in self._pipelines:
            self.hits += 1
            self._pipelines.move_to_end(preset.name)
            return self._pipelines[preset.name]
        self.misses += 1
        started = time.perf_counter()
        with exclusive():  # transformers' loading is not thread-safe (engine.building)
            model, size = load()
        self._make_room(size, for_name=preset.name)
        if hasattr(model, "to"):
            model.to(self.device)
        self.load_seconds += time.perf_counter() - started
        self._pipelines[preset.name] = model
        self._sizes[preset.name] = size
        return model

    def loaded(self) -> list[str]:
        """Names of the resident pipelines (and guidance models), least recently used first."""
        return list(self._pipelines)

    def sizes(self) -> dict[str, int]:
        """Measured bytes of each resident pipeline, least recently used first."""
        return {name: self._sizes[name] for name in self._pipelines}

    @property
    def resident_bytes(self) -> int:
        """Bytes of weights held by all resident pipelines together."""
        return sum(self._sizes.values())

    def evict(self, name: str) -> None:
        """Drop one resident pipeline and give its memory back to the device."""
        del self._pipelines[name]
        del self._sizes[name]
        self.evictions += 1
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _make_room(self, size: int, *, for_name: str) -> None:
        while self._pipelines and self.resident_bytes + size > self.budget:
            oldest = next(iter(self._pipelines))
            log.info("evicting %s to make room for %s", oldest, for_name)
            self.evict(oldest)
        if size > self.budget:
            log.warning(
                "%s needs %d bytes, more than the whole budget of %d; loading it alone",
                for_name,
                size,
                self.budget,
            )
