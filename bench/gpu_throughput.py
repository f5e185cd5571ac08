"""Seconds per image on one GPU for the SD 1.5, SDXL and Flux-schnell architectures, with random weights.

    python bench/gpu_throughput.py            # full run: one CUDA GPU; an estimated 3-4 minutes on an H100 (limit: 8)
    python bench/gpu_throughput.py --smoke    # the same code on the CPU with the tiny configs, in seconds

Nothing is downloaded: each architecture is built at full size from the real repositories' config values,
written out below (stable-diffusion-v1-5, stable-diffusion-xl-base-1.0, FLUX.1-schnell: UNet or transformer,
VAE, CLIP and T5 text encoders), with random weights created directly on the GPU. Only the tokenizers are
Atelier's small offline ones; prompts are padded to the real lengths (77 CLIP tokens, 256 T5 tokens), so every
model does the work it does with real weights. Random weights may make NaN pixels: speed is what is measured.

Each architecture runs at its usual request (SD 1.5: 512x512, 30 steps; SDXL: 1024x1024, 30 steps, both with
classifier-free guidance; Flux-schnell: 1024x1024, 4 steps), three ways on the same weights, each warmed up once:

    plain     diffusers as its documentation shows it: fp16 (bf16 for Flux), `.to("cuda")`, one image per call
    atelier   Atelier's configuration: dtype from engine.device (bf16 where supported), engine.loading.place
              (channels-last convolutions, VAE slicing, diffusers' SDPA attention left in place), inference mode,
              one image per call through engine.batching.generate with a progress callback and previews, as a
              worker runs it
    batched   the same as atelier, with --images requests in one call, as the worker's batcher sends them

The table (seconds per image, lower is better; speedups above 1 mean faster; peak is torch's peak allocated
memory during the sequential images and during the batch; the numbers below only show the format):

    arch         size       steps  plain s/img  atelier s/img  batched s/img  atelier/plain  batched/seq  peak GiB 1/N
    sd15         512x512       30        0.812          0.790          0.612          1.03x        1.29x   2.6 / 5.1
    sdxl         1024x1024     30          ...
    flux         1024x1024      4          ...

`atelier/plain` is plain s/img ÷ atelier s/img; `batched/seq` is atelier s/img ÷ batched s/img.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
)

from engine.batching import generate
from engine.device import choose_device, choose_dtype
from engine.generate import TextToImage, check_request
from engine.loading import place
from engine.registry import Preset, Registry
from engine.tiny import build as build_tiny
from engine.tiny_tokenizers import clip_tokenizer, clip_vocab, t5_tokenizer

PROMPT = "a lighthouse on a cliff at dawn, watercolour, soft light, highly detailed"


@dataclass(frozen=True)
class Arch:
    """One architecture: its preset (full size and tiny), request size and steps, and the plain dtype."""

    name: str
    preset: str
    tiny_preset: str
    side: int
    steps: int
    plain_dtype: torch.dtype


ARCHS = {
    "sd15": Arch("sd15", "sd15", "tiny", 512, 30, torch.float16),
    "sdxl": Arch("sdxl", "sdxl", "tiny-sdxl", 1024, 30, torch.float16),
    "flux": Arch("flux", "flux-schnell", "tiny-flux", 1024, 4, torch.bfloat16),
}
SMOKE_SIDE, SMOKE_STEPS = 64, 2


# Full-size components, from the config.json files of the real repositories. --------------------------------

_SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
}


def _clip_l(**extra: Any) -> CLIPTextConfig:
    """openai/clip-vit-large-patch14's text tower (SD 1.5, SDXL's first encoder, Flux's pooled encoder).
    Token ids are those of Atelier's offline tokenizer; every dimension is the real one."""
    vocab = clip_vocab()
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_attention_heads=12,
        num_hidden_layers=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        **extra,
    )


def sd15_models() -> dict[str, Any]:
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        block_out_channels=[320, 640, 1280, 1280],
        layers_per_block=2,
        attention_head_dim=8,
        cross_attention_dim=768,
        norm_num_groups=32,
    )
    return {
        "unet": unet,
        "vae": AutoencoderKL(**_SD_VAE, sample_size=512, scaling_factor=0.18215),
        "text_encoder": CLIPTextModel(_clip_l()),
    }


def sd15_rest() -> dict[str, Any]:
    return {
        "tokenizer": clip_tokenizer(),
        "scheduler": PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def sdxl_models() -> dict[str, Any]:
    unet = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=[320, 640, 1280],
        layers_per_block=2,
        attention_head_dim=[5, 10, 20],
        transformer_layers_per_block=[1, 2, 10],
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        norm_num_groups=32,
    )
    vocab = clip_vocab()
    big_g = CLIPTextConfig(  # laion CLIP ViT-bigG/14 text tower, with its projection
        vocab_size=49408,
        hidden_size=1280,
        intermediate_size=5120,
        num_attention_heads=20,
        num_hidden_layers=32,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=1280,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    return {
        "unet": unet,
        "vae": AutoencoderKL(**_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        "text_encoder": CLIPTextModel(_clip_l()),
        "text_encoder_2": CLIPTextModelWithProjection(big_g),
    }


def sdxl_rest() -> dict[str, Any]:
    return {
        "tokenizer": clip_tokenizer(),
        "tokenizer_2": clip_tokenizer(),
        "scheduler": EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
            steps_offset=1,
        ),
    }


def flux_models() -> dict[str, Any]:
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )
    t5_xxl = T5Config(  # google/t5-v1_1-xxl, encoder only
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    vae = AutoencoderKL(
        **{**_SD_VAE, "latent_channels": 16},
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": CLIPTextModel(_clip_l()),
        "text_encoder_2": T5EncoderModel(t5_xxl),
    }


def flux_rest() -> dict[str, Any]:
    return {
        "tokenizer": clip_tokenizer(),
        "tokenizer_2": t5_tokenizer(),
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False
        ),
    }


FULL_MODELS: dict[str, Callable[[], dict[str, Any]]] = {
    "sd15": sd15_models,
    "sdxl": sdxl_models,
    "flux": flux_models,
}
"""The torch modules of each architecture: built on the device with random weights."""
FULL_REST: dict[str, Callable[[], dict[str, Any]]] = {"sd15": sd15_rest, "sdxl": sdxl_rest, "flux": flux_rest}
"""Tokenizers, schedulers and flags: built normally (schedulers keep float32 tables on the CPU)."""
PIPELINES = {"sd15": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline, "flux": FluxPipeline}


@contextlib.contextmanager
def building_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """New modules get their (random) weights on `device` in `dtype`: no CPU copy, no fp32 detour."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_pipeline(arch: Arch, registry: Registry, *, smoke: bool, device: torch.device, dtype: torch.dtype):
    """The architecture's pipeline with random weights, on `device` in `dtype`."""
    if smoke:
        pipeline = build_tiny(registry.get(arch.tiny_preset))
    else:
        with building_on(device, dtype):
            models = FULL_MODELS[arch.name]()
        pipeline = PIPELINES[arch.name](**models, **FULL_REST[arch.name]())
    pipeline.to(device, dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# Timing. ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    arch: str
    size: str
    steps: int
    plain: float
    atelier: float
    batched: float
    images: int
    peak_one: float | None
    peak_batch: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(device: torch.device, run: Callable[[], None]) -> tuple[float, float | None]:
    """Seconds `run` takes, and the peak GiB torch allocated meanwhile (None on the CPU)."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    run()
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def _plain_call(pipeline, preset: Preset, side: int, steps: int, seed: int) -> None:
    extra = {"max_sequence_length": 256} if preset.family == "flux" else {}
    pipeline(
        prompt=PROMPT,
        width=side,
        height=side,
        num_inference_steps=steps,
        guidance_scale=preset.default_guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pil",
        **extra,
    )


def _requests(preset: Preset, side: int, steps: int, seeds: range) -> list[TextToImage]:
    requests = [
        TextToImage.for_preset(preset, PROMPT, width=side, height=side, steps=steps, seed=seed)
        for seed in seeds
    ]
    for request in requests:
        check_request(preset, request)
    return requests


def _atelier_call(pipeline, preset: Preset, requests: list[TextToImage]) -> None:
    def progress(step: int, total: int, preview: object) -> None:
        """What a worker's progress pump does on the GPU thread: keep the latest frame."""

    with torch.inference_mode():
        results = generate(pipeline, preset, requests, [progress] * len(requests))
    for result in results:
        if isinstance(result, BaseException):
            raise result


def bench_arch(
    arch: Arch,
    registry: Registry,
    *,
    smoke: bool,
    device: torch.device,
    images: int,
    log: Callable[[str], None],
) -> Row:
    preset = registry.get(arch.tiny_preset if smoke else arch.preset)
    side, steps = (SMOKE_SIDE, SMOKE_STEPS) if smoke else (arch.side, arch.steps)
    plain_dtype = torch.float32 if device.type == "cpu" else arch.plain_dtype
    atelier_dtype = choose_dtype(device)

    started = time.perf_counter()
    pipeline = build_pipeline(arch, registry, smoke=smoke, device=device, dtype=plain_dtype)
    log(f"{arch.name}: built in {time.perf_counter() - started:.1f} s")

    _plain_call(pipeline, preset, side, 2, seed=0)  # warm-up
    plain, _ = _measure(
        device, lambda: [_plain_call(pipeline, preset, side, steps, seed) for seed in range(images)]
    )
    log(f"{arch.name}: plain {plain / images:.3f} s/img")

    pipeline.to(dtype=atelier_dtype)
    place(pipeline, device)
    sequential = _requests(preset, side, steps, range(images))
    _atelier_call(pipeline, preset, _requests(preset, side, 2, range(1)))  # warm-up
    atelier, peak_one = _measure(
        device, lambda: [_atelier_call(pipeline, preset, [request]) for request in sequential]
    )
    log(f"{arch.name}: atelier {atelier / images:.3f} s/img")
    _atelier_call(pipeline, preset, _requests(preset, side, 2, range(images)))  # warm-up at batch size
    batched, peak_batch = _measure(device, lambda: _atelier_call(pipeline, preset, sequential))
    log(f"{arch.name}: batched {batched / images:.3f} s/img")

    return Row(
        arch.name,
        f"{side}x{side}",
        steps,
        plain / images,
        atelier / images,
        batched / images,
        images,
        peak_one,
        peak_batch,
    )


HEADER = (
    f"{'arch':<12} {'size':<10} {'steps':>5}  {'plain s/img':>11}  {'atelier s/img':>13}  "
    f"{'batched s/img':>13}  {'atelier/plain':>13}  {'batched/seq':>11}  {'peak GiB 1/N':>12}"
)


def format_row(row: Row) -> str:
    peak = "-" if row.peak_one is None else f"{row.peak_one:.1f} / {row.peak_batch:.1f}"
    return (
        f"{row.arch:<12} {row.size:<10} {row.steps:>5}  {row.plain:>11.3f}  {row.atelier:>13.3f}  "
        f"{row.batched:>13.3f}  {row.plain / row.atelier:>12.2f}x  {row.atelier / row.batched:>10.2f}x  "
        f"{peak:>12}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configs, 64x64, 2 steps: seconds")
    parser.add_argument("--archs", default="sd15,sdxl,flux", help="comma-separated subset of sd15,sdxl,flux")
    parser.add_argument(
        "--images", type=int, help="images per measurement and batch size (default 4; smoke 2)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda; cpu with --smoke)")
    args = parser.parse_args(argv)

    names = [name.strip() for name in args.archs.split(",") if name.strip()]
    unknown = [name for name in names if name not in ARCHS]
    if unknown:
        parser.error(f"unknown arch(s) {', '.join(unknown)}; choose from {', '.join(ARCHS)}")
    device = choose_device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type != "cuda" and not args.smoke:
        parser.error("the full run needs a CUDA GPU; use --smoke on the CPU")
    images = args.images or (2 if args.smoke else 4)
    if images < 1:
        parser.error("--images must be at least 1")

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # NaN pixels from random weights
    diffusers.utils.logging.set_verbosity_error()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {where}; torch {torch.__version__}, diffusers {diffusers.__version__}; atelier dtype "
        f"{str(choose_dtype(device)).removeprefix('torch.')}; {images} images per measurement"
        f"{'; smoke (tiny configs)' if args.smoke else ''}"
    )
    registry = Registry.load()
    started = time.perf_counter()
    rows = []
    for name in names:
        rows.append(
            bench_arch(ARCHS[name], registry, smoke=args.smoke, device=device, images=images, log=log)
        )
        gc.collect()  # the architecture's pipeline went out of scope: give its memory back before the next
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    print(f"# total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
