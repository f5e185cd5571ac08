"""Tiny upscalers and face restorers: random state dicts in the key layout of the real weight files.

They are written once into `cache_dir/<preset>/` and then loaded by spandrel from the file exactly like real
weights, so its architecture detection and the whole load path are exercised offline. The upscalers are
Real-ESRGAN RRDBNets (`conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1/2`, `conv_hr`, `conv_last`,
wrapped in `params_ema` as in RealESRGAN_x4plus.pth) with few features and one block; the growth channels
stay at 32 because spandrel assumes that value. Their weights are a pass-through of the three colour
channels plus small random detail, so a tiny upscale looks like a nearest-neighbour enlargement of its input.

The face restorers cannot be small: spandrel builds GFPGAN and CodeFormer at their fixed 512 px size. A random
CodeFormer is no cheaper stand-in for GFPGAN: its VQ autoencoder is fixed too, so even with a one-layer
transformer it has 68 M parameters (GFPGAN: 86 M) and costs about as many seconds per face on a CPU. So each
real face preset gets a tiny counterpart of its own architecture (`tiny-gfpgan`, `tiny-codeformer`), and tests
build them once per session and restore as few faces as they can. They are stored as float16 safetensors to
halve the files (about 170 and 135 MB), and built only when used.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.building import seeded
from engine.enhance_presets import upscale_factor
from engine.registry import Preset

BUILD = 1
"""Version of the builders below; it is part of the file name, so a new version is built next to the old."""

SEED = 0
RRDB_FEATURES = 8
RRDB_BLOCKS = 1
RRDB_GROWTH = 32  # spandrel's RRDBNet hard-codes 32 growth channels; another value fails to load
DETAIL = 0.1
"""Scale of the random part of the tiny upscaler's weights, next to its unit pass-through."""


def ensure_weights(preset: Preset, cache_dir: Path) -> Path:
    """The weight file of a tiny upscale or face preset, writing it first when absent (atomic rename)."""
    build, suffix = _builder(preset)
    target = Path(cache_dir) / preset.name / f"weights-b{BUILD}{suffix}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with seeded(SEED):
        state = build(preset)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(handle)
    try:
        if suffix == ".safetensors":
            save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, staging)
        else:
            torch.save({"params_ema": state}, staging)
        os.chmod(staging, 0o644)
        os.replace(staging, target)  # racing builders write the same bytes; the last rename wins
    finally:
        Path(staging).unlink(missing_ok=True)
    return target


def realesrgan_state_dict(scale: int, *, features: int = RRDB_FEATURES, blocks: int = RRDB_BLOCKS) -> dict:
    """A Real-ESRGAN RRDBNet state dict for `scale` 4, 2 or 1 (x2 and x1 see a pixel-unshuffled input, 12 or
    48 channels, then upsample 4x as Real-ESRGAN does). Uses the global torch RNG."""
    if scale not in (1, 2, 4):
        raise ValueError(f"Real-ESRGAN upscales by 1, 2 or 4 (got {scale})")
    unshuffle = {4: 1, 2: 2, 1: 4}[scale]
    in_channels = 3 * unshuffle**2
    state: dict[str, torch.Tensor] = {}
    # Feature channel c carries colour c (for x2: the top-left pixel of each 2x2 cell) through every layer.
    _conv(state, "conv_first", in_channels, features, passthrough=[c * unshuffle**2 for c in range(3)])
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                inputs = features + (k - 1) * RRDB_GROWTH
                outputs = features if k == 5 else RRDB_GROWTH
                _conv(state, f"body.{block}.rdb{rdb}.conv{k}", inputs, outputs)
    _conv(state, "conv_body", features, features)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        _conv(state, name, features, features, passthrough=[0, 1, 2])
    _conv(state, "conv_last", features, 3, passthrough=[0, 1, 2])
    return state


def gfpgan_state_dict() -> dict:
    """A GFPGAN 1.4 (GFPGANv1Clean, 512 px) state dict, initialised as the architecture initialises itself."""
    from spandrel.architectures.GFPGAN import GFPGAN

    # The same hyperparameters spandrel uses when it loads a GFPGAN file.
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    return model.state_dict()


def codeformer_state_dict() -> dict:
    """A CodeFormer state dict with the real VQ autoencoder (fixed by the architecture) and a one-layer
    transformer over a small codebook, fused at one scale so the fidelity weight still has an effect."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script in the architecture module
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        model = CodeFormer(
            dim_embd=64, n_head=8, n_layers=1, codebook_size=64, latent_size=256, connect_list=["32"]
        )
    return model.state_dict()


def _builder(preset: Preset) -> tuple[Callable[[Preset], dict], str]:
    if not preset.is_tiny:
        raise ValueError(f"preset {preset.name!r} is not tiny: its weights come from {preset.source}")
    if preset.role == "upscale" and preset.pipeline == "ESRGAN":
        return (lambda p: realesrgan_state_dict(upscale_factor(p))), ".pth"
    if preset.role == "face" and preset.pipeline == "GFPGAN":
        return (lambda p: gfpgan_state_dict()), ".safetensors"
    if preset.role == "face" and preset.pipeline == "CodeFormer":
        return (lambda p: codeformer_state_dict()), ".safetensors"
    raise ValueError(
        f"no tiny weights for preset {preset.name!r} (role {preset.role}, pipeline {preset.pipeline}); "
        "tiny upscalers are ESRGAN, tiny face restorers GFPGAN or CodeFormer"
    )


def _conv(
    state: dict[str, torch.Tensor], name: str, inputs: int, outputs: int, *, passthrough: list[int] = ()
) -> None:
    """A 3x3 convolution with small random weights; output channel i copies input channel passthrough[i]."""
    weight = torch.randn(outputs, inputs, 3, 3) * (DETAIL * math.sqrt(2 / (inputs * 9)))
    for out_channel, in_channel in enumerate(passthrough):
        weight[out_channel, in_channel, 1, 1] += 1.0
    state[f"{name}.weight"] = weight
    state[f"{name}.bias"] = torch.zeros(outputs)
