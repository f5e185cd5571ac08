"""Helpers for the enhancement tests: test images, pixel arrays, and what the `atelier` command printed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data


def astronaut(side: int = 512) -> Image.Image:
    """scikit-image's bundled portrait (one frontal face), optionally shrunk to `side` x `side`."""
    image = Image.fromarray(data.astronaut(), "RGB")
    return image if side == 512 else image.resize((side, side), Image.Resampling.LANCZOS)


def faceless(width: int = 96, height: int = 64) -> Image.Image:
    """A photo without a face (scikit-image's coffee cup)."""
    return Image.fromarray(data.coffee(), "RGB").resize((width, height), Image.Resampling.LANCZOS)


def pixels(image: Image.Image | Path) -> np.ndarray:
    if isinstance(image, Path):
        with Image.open(image) as opened:
            return np.asarray(opened.convert("RGB")).astype(np.int16)
    return np.asarray(image.convert("RGB")).astype(np.int16)


def printed_paths(result: subprocess.CompletedProcess[str], cwd: Path) -> list[Path]:
    """The image paths a successful command printed on stdout, one per line."""
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    return [path if path.is_absolute() else cwd / path for path in paths]
