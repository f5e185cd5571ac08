"""What a LoRA training run is configured with, and what can be trained: torch-free, so front-ends can check a
training request (and fill its defaults) before anything is queued. `engine.training` runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

TRAINABLE_FAMILIES = ("sd15", "sdxl")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CHECKPOINT_FILE = "checkpoint.pt"
MIN_IMAGES, MAX_IMAGES = 3, 200
MAX_ASPECT = 2.0

TrainProgress = Callable[[int, int, float], None]
"""Called after every optimiser step with (step, total steps, loss); what it raises stops training."""


@dataclass(frozen=True)
class TrainingConfig:
    """How to train: the LoRA's size (rank, alpha) and the optimisation (steps, learning rate, batch size)."""

    rank: int
    alpha: float
    steps: int
    learning_rate: float
    batch_size: int
    resolution: int
    checkpoint_every: int = 100
    seed: int = 0
    sample_count: int = 2
    sample_steps: int = 20

    def __post_init__(self) -> None:
        for name in ("rank", "steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1 (got {getattr(self, name)})")
        if not 1 <= self.rank <= 256:
            raise ValueError(f"rank must be between 1 and 256 (got {self.rank})")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning rate must be above 0 and at most 1 (got {self.learning_rate:g})")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be above 0 (got {self.alpha:g})")
        if self.resolution < 64 or self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, at least 64 (got {self.resolution})")


FAMILY_DEFAULTS = {
    "sd15": TrainingConfig(rank=16, alpha=16, steps=1500, learning_rate=1e-4, batch_size=1, resolution=512),
    "sdxl": TrainingConfig(rank=32, alpha=32, steps=2000, learning_rate=1e-4, batch_size=1, resolution=1024),
}


def check_trainable(model: str, family: str) -> None:
    """ValueError naming the model when its family cannot be trained here."""
    if family not in TRAINABLE_FAMILIES:
        raise ValueError(
            f"model {model!r} ({family}) cannot be trained: LoRA training supports the "
            f"{' and '.join(TRAINABLE_FAMILIES)} families"
        )


def defaults_for(family: str, *, resolution: int | None = None, **overrides: Any) -> TrainingConfig:
    """The family's default config with `overrides` (None values are ignored); ValueError for a family that
    cannot be trained or a value out of range."""
    check_trainable(family, family)
    base = FAMILY_DEFAULTS[family]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if resolution is not None:
        changes["resolution"] = resolution
    return replace(base, **changes)
