"""Cheap progress previews: each family's latents mapped to RGB by a fixed linear approximation.

It costs one small matrix product per step and needs no weights. The coefficients are the widely used
per-family latent-to-RGB fits (as in ComfyUI's latent formats); the preview has the latent's resolution
(1/8 of the image's side), which is what a progress message needs.
"""

from __future__ import annotations

import torch
from PIL import Image

# (per latent channel: R, G, B weights), (R, G, B bias)
_FACTORS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd15": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
    "flux": (
        [
            [-0.0346, 0.0244, 0.0681],
            [0.0034, 0.0210, 0.0687],
            [0.0275, -0.0668, -0.0433],
            [-0.0174, 0.0160, 0.0617],
            [0.0859, 0.0721, 0.0329],
            [0.0004, 0.0383, 0.0115],
            [0.0405, 0.0861, 0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245, 0.0250, 0.1180],
            [0.1008, 0.0755, -0.0421],
            [-0.0515, 0.0201, 0.0011],
            [0.0428, -0.0012, -0.0036],
            [0.0817, 0.0765, 0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778],
        ],
        [-0.0329, -0.0718, -0.0851],
    ),
}


def latent_to_rgb(family: str, latent: torch.Tensor) -> Image.Image:
    """An RGB image from one latent of shape (channels, height, width) in the model's own latent space."""
    if family not in _FACTORS:
        raise ValueError(f"no preview factors for family {family!r}; families: {', '.join(_FACTORS)}")
    weights, bias = (torch.tensor(values) for values in _FACTORS[family])
    latent = latent.detach().to("cpu", torch.float32)
    if latent.shape[0] != weights.shape[0]:
        raise ValueError(
            f"a {family} latent has {weights.shape[0]} channels, got shape {tuple(latent.shape)}"
        )
    rgb = torch.einsum("chw,cr->hwr", latent, weights) + bias
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(pixels.numpy())  # uint8 (height, width, 3) is RGB


def unpack_flux_latents(
    latents: torch.Tensor, *, height: int, width: int, vae_scale_factor: int
) -> torch.Tensor:
    """Flux's packed latents (batch, patches, channels * 2 * 2) back to (batch, channels, height, width)."""
    rows = 2 * (height // (vae_scale_factor * 2))
    cols = 2 * (width // (vae_scale_factor * 2))
    batch, _, packed = latents.shape
    channels = packed // 4
    grid = latents.view(batch, rows // 2, cols // 2, channels, 2, 2)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, rows, cols)


def first_preview(
    family: str, latents: torch.Tensor, *, height: int, width: int, vae_scale_factor: int
) -> Image.Image:
    """The preview of the first image of a batch, from the latents a pipeline hands its step callback."""
    if family == "flux":
        latents = unpack_flux_latents(
            latents[:1], height=height, width=width, vae_scale_factor=vae_scale_factor
        )
    return latent_to_rgb(family, latents[0])
