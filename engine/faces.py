"""Face restoration: each detected face is cropped with a margin, resized to the restorer's size (512 px for
GFPGAN and CodeFormer), restored through spandrel, and pasted back with a feathered mask.

The mask is 1 in the middle of the crop and falls linearly to 0 over `feather` pixels towards the crop's
edges, so the restored face melts into the image and nothing outside the crop changes. An image without a
face comes back unchanged: that is a result, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor

from engine.enhance_presets import DEFAULT_FIDELITY
from engine.face_detect import DEFAULT_MARGIN, Box, detect_faces, face_crop

FEATHER = 0.1
"""Width of the paste mask's ramp, as a share of the crop's side."""

FaceProgress = Callable[[int, int, Image.Image | None], None]


@dataclass(frozen=True)
class FaceRestoration:
    """The image with its faces restored, and where they were (empty: no face found, image unchanged)."""

    image: Image.Image
    faces: list[Box] = field(default_factory=list)
    crops: list[Box] = field(default_factory=list)


def restorer_size(model: ImageModelDescriptor) -> int:
    """The side of the square a face restorer works at (GFPGAN: its minimum, CodeFormer: its multiple)."""
    requirements = model.size_requirements
    return max(requirements.minimum, requirements.multiple_of, 1)


@torch.inference_mode()
def restore_faces(
    model: ImageModelDescriptor,
    image: Image.Image,
    *,
    faces: list[Box] | None = None,
    fidelity: float = DEFAULT_FIDELITY,
    margin: float = DEFAULT_MARGIN,
    progress: FaceProgress | None = None,
) -> FaceRestoration:
    """Restore every face in `image` (RGB); `faces` skips detection (e.g. boxes found before an upscale)."""
    if not 0 <= fidelity <= 1:
        raise ValueError(f"fidelity must be between 0 and 1 (got {fidelity:g})")
    if margin < 0:
        raise ValueError(f"margin must be 0 or more (got {margin:g})")
    if image.mode != "RGB":
        raise ValueError(f"face restoration takes an RGB image (got mode {image.mode}); convert it first")
    faces = detect_faces(image) if faces is None else faces
    if not faces:
        return FaceRestoration(image)
    pixels = np.asarray(image).astype(np.float32)
    crops = []
    for done, face in enumerate(faces, start=1):
        crop = face_crop(face, image.size, margin=margin)
        region = pixels[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]
        restored = _restore_square(model, region.round().astype(np.uint8), fidelity)
        mask = feather_mask(crop.width, max(1, round(crop.width * FEATHER)))[..., None]
        region[...] = region * (1 - mask) + restored.astype(np.float32) * mask
        crops.append(crop)
        if progress is not None:
            progress(done, len(faces), None)
    result = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8), "RGB")
    return FaceRestoration(result, list(faces), crops)


def feather_mask(side: int, feather: int) -> np.ndarray:
    """A side x side mask: 1 inside, falling linearly to 0 over `feather` pixels at the edges (never 0 within
    the square, exactly 0 outside it)."""
    distance = np.minimum(np.arange(side), np.arange(side)[::-1]) + 0.5
    ramp = np.clip(distance / feather, 0, 1).astype(np.float32)
    return np.minimum(ramp[:, None], ramp[None, :])


def _restore_square(model: ImageModelDescriptor, face: np.ndarray, fidelity: float) -> np.ndarray:
    """One square RGB crop through the restorer at its own size and back to the crop's size."""
    side = face.shape[0]
    size = restorer_size(model)
    resample = Image.Resampling.LANCZOS
    scaled = np.asarray(Image.fromarray(face).resize((size, size), resample))
    x = torch.from_numpy(scaled.copy()).permute(2, 0, 1).unsqueeze(0).to(model.device, model.dtype)
    x = x / 127.5 - 1  # GFPGAN and CodeFormer were trained on [-1, 1], not spandrel's usual [0, 1]
    if model.architecture.id == "CodeFormer":
        out = model.model(x, weight=fidelity)[0]
    elif model.architecture.id == "GFPGAN":
        # Fixed noise (the weights' own buffers), so a retried job restores the same face the same way.
        out = model.model(x, return_rgb=False, randomize_noise=False)[0]
    else:
        raise ValueError(
            f"{model.architecture.name} is not a face restorer Atelier knows (GFPGAN, CodeFormer)"
        )
    out = ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
    return np.asarray(Image.fromarray(out).resize((side, side), resample))
