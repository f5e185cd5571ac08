"""`atelier worker --models`: the presets a dedicated worker serves, read against the real model registry."""

from __future__ import annotations

import pytest

from atelier.cli import UsageError
from atelier.cli_worker import _served_models
from engine.registry import Registry


def test_models_name_presets_and_their_tiny_counterparts_in_tiny_mode() -> None:
    registry = Registry.load()
    assert _served_models(registry, None, tiny=False) is None  # no flag: any model
    assert _served_models(registry, "sdxl, flux-schnell", tiny=False) == {"sdxl", "flux-schnell"}
    assert _served_models(registry, "sdxl", tiny=True) == {"sdxl", "tiny-sdxl"}


@pytest.mark.parametrize("names", ["sdxl,nope", ",", ""])
def test_an_unknown_or_empty_model_list_is_refused(names: str) -> None:
    with pytest.raises(UsageError, match="--models takes model presets"):
        _served_models(Registry.load(), names, tiny=False)
