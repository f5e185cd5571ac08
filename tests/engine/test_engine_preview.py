"""Latent previews: the per-family linear map, and Flux's packed latents unpacked in the right order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from engine.preview import first_preview, latent_to_rgb, unpack_flux_latents


def test_zero_latents_show_the_family_bias() -> None:
    assert np.asarray(latent_to_rgb("sd15", torch.zeros(4, 2, 3))).tolist() == [[[128, 128, 128]] * 3] * 2
    sdxl = np.asarray(latent_to_rgb("sdxl", torch.zeros(4, 1, 1)))[0, 0]
    assert sdxl.tolist() == [141, 125, 127]  # bias (0.1084, -0.0175, -0.0011) mapped from [-1, 1]


def test_channels_map_to_colours() -> None:
    # In SD's latent space the fourth channel darkens, strongest in blue; the first brightens.
    dark = np.asarray(latent_to_rgb("sd15", torch.tensor([0.0, 0, 0, 1]).view(4, 1, 1)))[0, 0]
    bright = np.asarray(latent_to_rgb("sd15", torch.tensor([1.0, 0, 0, 0]).view(4, 1, 1)))[0, 0]
    assert dark[2] < dark[0] < 128 < bright.min()
    assert np.asarray(latent_to_rgb("sd15", torch.full((4, 1, 1), 50.0))).max() == 255  # clamped, not wrapped


def test_wrong_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no preview factors for family 'sd3'"):
        latent_to_rgb("sd3", torch.zeros(16, 1, 1))
    with pytest.raises(ValueError, match="a flux latent has 16 channels"):
        latent_to_rgb("flux", torch.zeros(4, 1, 1))


def test_flux_latents_unpack_to_their_image_layout() -> None:
    height, width, scale = 64, 96, 8
    latents = torch.randn(2, 16, height // scale, width // scale)
    packed = FluxPipeline._pack_latents(latents, 2, 16, height // scale, width // scale)
    assert torch.equal(
        unpack_flux_latents(packed, height=height, width=width, vae_scale_factor=scale), latents
    )
    preview = first_preview("flux", packed, height=height, width=width, vae_scale_factor=scale)
    assert np.array_equal(np.asarray(preview), np.asarray(latent_to_rgb("flux", latents[0])))
