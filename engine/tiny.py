"""Tiny presets: pipelines of each family built from small configs with seeded random weights.

They exercise the same code as real models (a directory loaded with the pipeline class's `from_pretrained`)
at a size a CPU runs in a tenth of a second, so tests and the offline demo need no download. A preset is
built once into `cache_dir/<name>/`: written to a temporary directory, then renamed into place, so two
processes racing to build it never leave a half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    T5Config,
    T5EncoderModel,
)

from engine.building import seeded
from engine.registry import Preset
from engine.tiny_tokenizers import CLIP_MAX_LENGTH, clip_tokenizer, clip_vocab, t5_tokenizer, t5_vocab

BUILD = 2
"""Version of the tiny configs below; a cached build stamped with another version is rebuilt."""

STAMP = "atelier-tiny.json"
SEED = 0
SAFETY_IMAGE_SIZE = 32


def ensure_built(preset: Preset, cache_dir: Path) -> Path:
    """The directory holding `preset`'s tiny pipeline, building it first when absent or stale."""
    target = Path(cache_dir) / preset.name
    if _is_current(target, preset):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}-build-", dir=target.parent))
    try:
        build(preset).save_pretrained(staging)
        (staging / STAMP).write_text(json.dumps(_stamp(preset), sort_keys=True))
        _publish(staging, target, preset)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build(preset: Preset) -> diffusers.DiffusionPipeline:
    """A fresh tiny pipeline of `preset.pipeline`; the same preset always gets the same weights.

    The global torch RNG is forked, so building leaves the caller's random state untouched. An inpainting
    preset (role "inpaint") gets a denoiser that also reads the mask and the masked image's latents.
    """
    builders = {"sd15": _sd15_components, "sdxl": _sdxl_components, "flux": _flux_components}
    if preset.family not in builders:
        raise ValueError(f"no tiny builder for family {preset.family!r}; families: {', '.join(builders)}")
    pipeline_class = getattr(diffusers, preset.pipeline)
    with seeded(SEED):
        return pipeline_class(**builders[preset.family](inpaint=preset.role == "inpaint"))


def _stamp(preset: Preset) -> dict[str, Any]:
    return {"build": BUILD, "family": preset.family, "pipeline": preset.pipeline}


def _is_current(directory: Path, preset: Preset) -> bool:
    try:
        return json.loads((directory / STAMP).read_text()) == _stamp(preset)
    except (OSError, ValueError):
        return False


def _publish(staging: Path, target: Path, preset: Preset) -> None:
    """Rename the finished build into place; a stale build there is moved aside first."""
    for _ in range(3):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if _is_current(target, preset):
                return  # another process published the same build first
        aside = target.with_name(f".{target.name}-stale-{uuid.uuid4().hex}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue  # someone else moved it aside already
        shutil.rmtree(aside, ignore_errors=True)
    raise RuntimeError(f"could not publish the tiny build of {preset.name!r} to {target}")


def _clip_config(**extra: Any) -> CLIPTextConfig:
    vocab = clip_vocab()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=CLIP_MAX_LENGTH,
        **extra,
    )


def _vae(latent_channels: int, **extra: Any) -> AutoencoderKL:
    """Four blocks, so the VAE downsamples by 8 like the real ones and latents have real-sized shapes."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=2,
        sample_size=64,
        **extra,
    )


def _sd15_components(*, inpaint: bool = False) -> dict[str, Any]:
    # An inpainting UNet reads 4 noisy latent channels, 1 mask channel and 4 masked-image latent channels.
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": _vae(4),
        "text_encoder": CLIPTextModel(_clip_config()),
        "tokenizer": clip_tokenizer(),
        "scheduler": scheduler,
        # SD 1.5 ships a safety checker; the tiny one has its shape (engine.safety runs it beside the pipeline).
        "safety_checker": _safety_checker(),
        "feature_extractor": CLIPImageProcessor(
            size={"shortest_edge": SAFETY_IMAGE_SIZE},
            crop_size={"height": SAFETY_IMAGE_SIZE, "width": SAFETY_IMAGE_SIZE},
        ),
        "requires_safety_checker": True,
    }


def _safety_checker() -> StableDiffusionSafetyChecker:
    """A CLIP vision tower of 32-pixel images and 16-dimensional concept embeddings, with the real checker's
    17 concepts, 3 special-care concepts and their thresholds of 1.0."""
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=SAFETY_IMAGE_SIZE,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=_clip_config().to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    checker = StableDiffusionSafetyChecker(config)
    with (
        torch.no_grad()
    ):  # random concepts, as random as the rest of the weights (the constructor gives ones)
        checker.concept_embeds.copy_(torch.randn_like(checker.concept_embeds))
        checker.special_care_embeds.copy_(torch.randn_like(checker.special_care_embeds))
    return checker


def _sdxl_components(*, inpaint: bool = False) -> dict[str, Any]:
    # The UNet's cross-attention sees both text encoders' hidden states side by side (32 + 32), and its
    # added condition is the pooled projection (32) plus six size/crop values embedded in 8 dims each.
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=4,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": _vae(4),
        "text_encoder": CLIPTextModel(_clip_config()),
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": CLIPTextModelWithProjection(_clip_config(projection_dim=32)),
        "tokenizer_2": clip_tokenizer(),
        "scheduler": scheduler,
    }


def _flux_components(*, inpaint: bool = False) -> dict[str, Any]:
    # 16 latent channels packed 2x2 into 64 transformer inputs, as in FLUX.1. FLUX.1 Fill also reads the packed
    # masked-image latents (64) and the mask at pixel resolution folded into the packed grid (8 * 8 * 4 = 256),
    # still predicting 64 channels, and is guidance-distilled (guidance is an input, as in FLUX.1-dev).
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64 + 64 + 256 if inpaint else 64,
        out_channels=64,
        guidance_embeds=inpaint,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_vocab()),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    return {
        "transformer": transformer,
        "vae": _vae(
            16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611
        ),
        "text_encoder": CLIPTextModel(_clip_config()),
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": t5,
        "tokenizer_2": t5_tokenizer(),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0),
    }
