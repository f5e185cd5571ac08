"""The extra cost per image of ControlNet and IP-Adapter on one GPU, with random weights (issue 15).

    python bench/guided_cost.py             # SDXL 1024x1024, 30 steps, one CUDA GPU (a few minutes)
    python bench/guided_cost.py --smoke     # the same code on the CPU with the tiny configs, in seconds

The base pipeline is built as in bench/gpu_throughput.py (full-size SDXL from the real configs, weights created
on the GPU); the ControlNet is `ControlNetModel.from_unet` of that UNet (the architecture of
diffusers/controlnet-canny-sdxl-1.0), and the IP-Adapter is a ViT-H/14 image encoder (h94/IP-Adapter's
`models/image_encoder`, 1024-dimensional embeddings) with a plain adapter's projection and attention weights
for the UNet (engine.tiny_guided.ip_adapter_state_dict). Each variant runs as engine.guided runs it
(`from_pipe` around the same pipeline; the adapter loaded for the calls and unloaded after), warmed up once,
on the same weights, one image per call. The table (the numbers below only show the format; no GPU has run
this yet):

    variant       s/img   vs plain
    plain         1.920     1.00x
    controlnet    2.600     1.35x
    ip-adapter    2.050     1.07x
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from bench.gpu_throughput import ARCHS, PROMPT, _measure, build_pipeline, building_on
from engine.device import choose_device, choose_dtype
from engine.registry import Registry
from engine.tiny_guided import IMAGE_EMBED_DIM, ip_adapter_state_dict

VIT_H = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 16,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "patch_size": 8,
    "image_size": 32,
    "projection_dim": IMAGE_EMBED_DIM,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configs, 64x64, 2 steps: seconds")
    parser.add_argument("--images", type=int, help="images per measurement (default 4; smoke 2)")
    args = parser.parse_args(argv)
    device = choose_device("cpu" if args.smoke else "cuda")
    if device.type != "cuda" and not args.smoke:
        parser.error("the full run needs a CUDA GPU; use --smoke on the CPU")
    images = args.images or (2 if args.smoke else 4)
    dtype = choose_dtype(device)
    side, steps = (64, 2) if args.smoke else (1024, 30)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # NaN pixels from random weights
    diffusers.utils.logging.set_verbosity_error()

    started = time.perf_counter()
    plain = build_pipeline(ARCHS["sdxl"], Registry.load(), smoke=args.smoke, device=device, dtype=dtype)
    with building_on(device, dtype):
        controlnet = ControlNetModel.from_unet(plain.unet)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**(TINY_VISION if args.smoke else VIT_H)))
        adapter = ip_adapter_state_dict(plain.unet, encoder.config.projection_dim)
    adapter_weights = {
        group: {
            key[len(group) + 1 :]: value.to(device, dtype)
            for key, value in adapter.items()
            if key.startswith(group)
        }
        for group in ("image_proj", "ip_adapter")
    }
    print(f"# built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    condition = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8))

    def call(pipeline, **extra) -> None:
        pipeline(
            prompt=PROMPT,
            width=side,
            height=side,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="pil",
            **extra,
        )

    variants = {
        "plain": (StableDiffusionXLPipeline.from_pipe(plain), {}),
        "controlnet": (
            StableDiffusionXLControlNetPipeline.from_pipe(plain, controlnet=controlnet),
            {"image": condition, "controlnet_conditioning_scale": 1.0},
        ),
        "ip-adapter": (StableDiffusionXLPipeline.from_pipe(plain), {"ip_adapter_image": [condition]}),
    }
    seconds = {}
    for name, (pipeline, extra) in variants.items():
        pipeline.set_progress_bar_config(disable=True)
        if name == "ip-adapter":
            pipeline.register_modules(image_encoder=encoder, feature_extractor=None)
            pipeline.load_ip_adapter([adapter_weights], subfolder=[""], weight_name=[""])
        with torch.inference_mode():
            call(pipeline, **extra)  # warm-up
            total, _ = _measure(device, lambda p=pipeline, e=extra: [call(p, **e) for _ in range(images)])
        if name == "ip-adapter":
            pipeline.unload_ip_adapter()
        seconds[name] = total / images
        print(f"# {name}: {seconds[name]:.3f} s/img", file=sys.stderr)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {where}; sdxl {side}x{side}, {steps} steps, {str(dtype).removeprefix('torch.')}, {images} images"
    )
    print(f"{'variant':<12} {'s/img':>7}  {'vs plain':>8}")
    for name, value in seconds.items():
        print(f"{name:<12} {value:>7.3f}  {value / seconds['plain']:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
