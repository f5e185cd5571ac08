"""Shared fixtures: the built-in registry and the three tiny presets, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.engine import Engine
from engine.registry import Registry
from engine.tiny import ensure_built

TINY_PRESETS = ["tiny", "tiny-sdxl", "tiny-flux"]


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    """A cache directory holding the built tiny presets, shared by every engine test."""
    cache = tmp_path_factory.mktemp("tiny-models")
    for name in TINY_PRESETS:
        ensure_built(registry.get(name), cache)
    return cache


@pytest.fixture(scope="session")
def engine(registry: Registry, tiny_cache: Path) -> Engine:
    """One CPU engine for tests that only look at images; cache tests make their own to count loads."""
    return Engine(registry, tiny_cache, device="cpu")
