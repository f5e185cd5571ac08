"""The enhancer: upscaling and face restoration on one device, with its own residency cache of spandrel models.

Like `Engine.txt2img`, every method blocks and is meant for the worker's single GPU thread. Face restoration
detects faces first and loads a restorer only when there is a face to restore.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from engine.enhance_presets import DEFAULT_FIDELITY, upscale_factor
from engine.face_detect import detect_faces
from engine.faces import FaceProgress, FaceRestoration, restore_faces
from engine.image_models import ImageModelCache
from engine.registry import Preset
from engine.upscale import DEFAULT_TILE, tile_count, upscale


class Enhancer:
    """Real-ESRGAN upscaling and GFPGAN/CodeFormer face restoration on `device`."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        device: torch.device,
        dtype: torch.dtype,
        memory_budget_bytes: int | None = None,
        tile: int = DEFAULT_TILE,
    ) -> None:
        self.tile = tile
        self._cache = ImageModelCache(
            cache_dir=Path(cache_dir), device=device, dtype=dtype, memory_budget_bytes=memory_budget_bytes
        )

    @property
    def cache(self) -> ImageModelCache:
        """The residency cache, for its statistics (hits, misses, load seconds, evictions)."""
        return self._cache

    def upscale(
        self, preset: Preset, image: Image.Image, progress: FaceProgress | None = None
    ) -> Image.Image:
        """`image` enlarged by the preset's factor, in tiles; `progress(tile, tiles, None)`."""
        _check_role(preset, "upscale")
        return upscale(self._cache.get(preset), image, tile=self.tile, progress=progress)

    def restore_faces(
        self,
        preset: Preset,
        image: Image.Image,
        *,
        fidelity: float = DEFAULT_FIDELITY,
        progress: FaceProgress | None = None,
    ) -> FaceRestoration:
        """`image` with its faces restored; no face found gives the image back unchanged."""
        return self.enhance(image, faces=preset, fidelity=fidelity, progress=progress)

    def enhance(
        self,
        image: Image.Image,
        *,
        faces: Preset | None = None,
        upscaler: Preset | None = None,
        fidelity: float = DEFAULT_FIDELITY,
        progress: FaceProgress | None = None,
    ) -> FaceRestoration:
        """Upscale (when `upscaler` is given), then restore faces (when `faces` is given). Faces are found on
        the original, so detection costs the same at any factor, and restored at the larger size, where the
        restorer's 512 px output loses less detail. Progress counts tiles, then faces."""
        if not 0 <= fidelity <= 1:
            raise ValueError(f"fidelity must be between 0 and 1 (got {fidelity:g})")
        if faces is not None:
            _check_role(faces, "face")
        if upscaler is not None:
            _check_role(upscaler, "upscale")
        boxes = detect_faces(image) if faces is not None else []
        tiles = tile_count(*image.size, tile=self.tile) if upscaler is not None else 0
        total = tiles + len(boxes)

        def report(offset: int) -> FaceProgress | None:
            if progress is None:
                return None
            return lambda step, _total, preview: progress(offset + step, total, preview)

        if upscaler is not None:
            image = upscale(self._cache.get(upscaler), image, tile=self.tile, progress=report(0))
            factor = upscale_factor(upscaler)
            boxes = [box.scaled(factor) for box in boxes]
        if not boxes:
            return FaceRestoration(image)
        return restore_faces(
            self._cache.get(faces), image, faces=boxes, fidelity=fidelity, progress=report(tiles)
        )


def _check_role(preset: Preset, role: str) -> None:
    if preset.role != role:
        raise ValueError(f"model {preset.name!r} has role {preset.role!r}; this needs a {role} model")
